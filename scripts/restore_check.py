"""Prove a backup restores: dump a database, restore it into a scratch one, compare row counts.

    python scripts/restore_check.py --dsn postgresql://user@host:5432/market [--keep]

1. counts the rows of every table and continuous aggregate in the database's schema;
2. `pg_dump --format=custom` of the whole database into a temporary file;
3. creates an empty scratch database beside it on the same server and, when the source uses
   TimescaleDB, creates the extension there and brackets the restore with
   `timescaledb_pre_restore()` / `timescaledb_post_restore()` (TimescaleDB's documented
   procedure; hypertables, compressed chunks, policies and aggregates come back as they were);
4. `pg_restore` into it, counts again and prints both counts side by side;
5. drops the scratch database (unless --keep) and exits 0 only when every count matches.

pg_dump and pg_restore must be the server's major version (PostgreSQL 15 here). The role in
the DSN must be allowed to CREATE DATABASE. docs/operations.md says when to run it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def row_counts(dsn: str) -> dict[str, int]:
    """Rows of every table (hypertables: all chunks, compressed or not) and every
    continuous aggregate in the current schema, by name."""
    with psycopg.connect(dsn) as conn:
        names = [
            name
            for (name,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
                "AND relkind IN ('r', 'p') AND NOT relispartition ORDER BY 1"
            ).fetchall()
        ]
        if uses_timescaledb(conn):
            names += [
                name
                for (name,) in conn.execute(
                    "SELECT view_name FROM timescaledb_information.continuous_aggregates "
                    "WHERE view_schema = current_schema() ORDER BY 1"
                ).fetchall()
            ]
        return {
            name: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))
            ).fetchone()[0]
            for name in names
        }


def uses_timescaledb(conn: psycopg.Connection) -> bool:
    return (
        conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[
            0
        ]
        > 0
    )


def run(command: list[str], dsn: str) -> None:
    """Run a client program on `dsn` (appended as --dbname, its password passed through the
    environment so it never shows in the process list); exit with its stderr on failure."""
    info = conninfo_to_dict(dsn)
    env = dict(os.environ)
    if info.get("password"):
        env["PGPASSWORD"] = str(info.pop("password"))
    command = [*command, f"--dbname={make_conninfo('', **info)}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        sys.exit(f"{command[0]} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def restore_check(dsn: str, keep: bool = False) -> bool:
    """Dump `dsn`, restore it into a scratch database, print the counts; True when equal."""
    source = row_counts(dsn)
    admin = make_conninfo(dsn, dbname="postgres")
    scratch = f"{conninfo_to_dict(dsn)['dbname']}_restore_{secrets.token_hex(4)}"
    target = make_conninfo(dsn, dbname=scratch)
    with psycopg.connect(dsn) as conn:
        timescale = uses_timescaledb(conn)
    with tempfile.TemporaryDirectory(prefix="market_assets_dump_") as folder:
        dump = Path(folder) / "database.dump"
        run(["pg_dump", "--format=custom", f"--file={dump}"], dsn)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        try:
            if timescale:
                with psycopg.connect(target, autocommit=True) as conn:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                    conn.execute("SELECT timescaledb_pre_restore()")
            run(["pg_restore", "--exit-on-error", str(dump)], target)
            if timescale:
                with psycopg.connect(target, autocommit=True) as conn:
                    conn.execute("SELECT timescaledb_post_restore()")
            restored = row_counts(target)
        finally:
            if not keep:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(scratch)
                        )
                    )
    names = sorted(set(source) | set(restored))
    width = max((len(n) for n in names), default=5)
    print(f"{'table':<{width}} {'source':>12} {'restored':>12}")
    for name in names:
        mark = "" if source.get(name) == restored.get(name) else "  MISMATCH"
        print(f"{name:<{width}} {source.get(name, '-'):>12} {restored.get(name, '-'):>12}{mark}")
    same = source == restored
    print(
        f"RESULT restore_check={'ok' if same else 'mismatch'} tables={len(names)} "
        f"rows={sum(source.values())} timescaledb={timescale}"
        + (f" kept={scratch}" if keep else "")
    )
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="database to back up and check")
    parser.add_argument("--keep", action="store_true", help="keep the restored database")
    args = parser.parse_args()
    sys.exit(0 if restore_check(args.dsn, keep=args.keep) else 1)


if __name__ == "__main__":
    main()

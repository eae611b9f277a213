"""The runs one process executes in-process (the CLI's): tagged with that process, failed
when it died, and stopped between runs on SIGINT/SIGTERM.

Why: an in-process run lives and dies with its process. Killed (kill -9, out of memory, a
closed laptop), the process leaves its run STARTED for ever and, under the concurrency pools
of the full-stack dagster.yaml, holding its `vendor_*` pool slots: two such runs and every
later run waits for a slot that never frees. Dagster's run monitoring (dagster.yaml) cannot
see these runs' process (no run launcher started it), so the process that launches runs
checks the earlier ones itself:

- `execute_run` tags every run with this process's host, pid and start time;
- `fail_orphaned_runs` reports failed each unfinished run of this host whose process is gone
  (or whose pid now belongs to another process), frees its pool slots, and frees the slots
  any finished run still holds (what the daemon's `free_slots_after_run_end_seconds` does);
- `StopSignals` makes SIGINT and SIGTERM stop cleanly: the current run finishes (so every
  row it stores is counted), no further run starts (`execute_run` raises RunsInterrupted),
  and a second signal stops at once, reporting the current run failed and freeing its slots.

Signals are blocked in every thread while `StopSignals` is active and taken by one watcher
thread (`signal.sigwait`), so Dagster's own interrupt handling (which aborts the current step
and lets the caller start the next run) never sees them. Enter it before anything starts a
native thread (numpy, polars): a thread created earlier keeps the signals unblocked.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

import psutil
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, JobDefinition, RunsFilter
from dagster._core.events import JobFailureData, RunFailureReason
from dagster._core.execution.execute_in_process_result import ExecuteInProcessResult
from dagster._core.storage.dagster_run import FINISHED_STATUSES, DagsterRun

HOST_TAG = "market_assets/host"
PID_TAG = "market_assets/pid"
PROCESS_STARTED_TAG = "market_assets/process_started"
"""Process start time (epoch seconds): tells a live process from a later one given its pid."""

UNFINISHED_STATUSES = [
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
SIGNAL_MASKS = hasattr(signal, "pthread_sigmask")  # POSIX; elsewhere the defaults apply
START_TIME_TOLERANCE_S = 1.0


def process_tags(process: psutil.Process | None = None) -> dict[str, str]:
    """The run tags naming `process` (default: this one) on this host."""
    process = process or psutil.Process()
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(process.pid),
        PROCESS_STARTED_TAG: f"{process.create_time():.2f}",
    }


def process_state(tags: Mapping[str, str]) -> str:
    """The state of the process a run's tags name: "alive", "gone", or "unknown" (another
    host, or a run not tagged by `process_tags`)."""
    if tags.get(HOST_TAG) != socket.gethostname():
        return "unknown"
    try:
        pid, started = int(tags[PID_TAG]), float(tags[PROCESS_STARTED_TAG])
    except (KeyError, ValueError):
        return "unknown"
    try:
        process = psutil.Process(pid)
        reused = abs(process.create_time() - started) > START_TIME_TOLERANCE_S
        return "gone" if reused or process.status() == psutil.STATUS_ZOMBIE else "alive"
    except psutil.NoSuchProcess:
        return "gone"
    except psutil.AccessDenied:
        return "alive"


def execute_run(
    job: JobDefinition,
    instance: DagsterInstance,
    asset_selection: Sequence[AssetKey],
    tags: Mapping[str, str] | None,
    run_config: Mapping,
) -> ExecuteInProcessResult:
    """Execute one run in this process, tagged with it (RunsInterrupted instead, when a
    SIGINT/SIGTERM came since `StopSignals` started)."""
    raise_if_stopping()
    return job.execute_in_process(
        run_config=dict(run_config),
        instance=instance,
        asset_selection=list(asset_selection),
        tags={**(tags or {}), **process_tags()},
        raise_on_error=False,
    )


def fail_orphaned_runs(instance: DagsterInstance) -> list[str]:
    """Report failed every unfinished run of this host whose process is gone and free the
    pool slots of those runs and of every finished run; one line per run failed."""
    lines = []
    for run in _unfinished_runs(instance):
        if process_state(run.tags) != "gone":
            continue
        pid = run.tags[PID_TAG]
        _fail(
            instance,
            run,
            f"The process that ran it (pid {pid} on {run.tags[HOST_TAG]}) is gone (killed?): "
            f"marked failed by market-assets (pid {os.getpid()}).",
        )
        lines.append(
            f"run {run.run_id} was left {run.status.value} by process {pid}, which is gone: "
            "marked it failed and freed its pool slots"
        )
    free_slots_of_finished_runs(instance)
    return lines


def fail_own_runs(instance: DagsterInstance, reason: str) -> list[str]:
    """Report failed the unfinished runs this process started (and free their slots);
    their ids."""
    mine = process_tags()
    failed = []
    for run in _unfinished_runs(instance):
        if all(run.tags.get(key) == value for key, value in mine.items()):
            _fail(instance, run, reason)
            failed.append(run.run_id)
    return failed


def free_slots_of_finished_runs(instance: DagsterInstance) -> list[str]:
    """Free the pool slots (claimed or pending) still held by finished runs; their ids."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    holders = storage.get_concurrency_run_ids()
    if not holders:
        return []
    finished = instance.get_run_records(
        filters=RunsFilter(run_ids=list(holders), statuses=FINISHED_STATUSES)
    )
    for record in finished:
        storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
    return [record.dagster_run.run_id for record in finished]


def _unfinished_runs(instance: DagsterInstance) -> list[DagsterRun]:
    filters = RunsFilter(statuses=UNFINISHED_STATUSES, tags={HOST_TAG: socket.gethostname()})
    return list(instance.get_runs(filters=filters))


def _fail(instance: DagsterInstance, run: DagsterRun, message: str) -> None:
    instance.report_run_failed(
        run,
        message=message,
        job_failure_data=JobFailureData(
            error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION
        ),
    )
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)


class RunsInterrupted(Exception):
    """SIGINT or SIGTERM arrived: no further run is started."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by this signal (130, 143)."""
        return 128 + self.signum


_active: StopSignals | None = None


def raise_if_stopping() -> None:
    """RunsInterrupted when SIGINT/SIGTERM arrived while `StopSignals` is active."""
    if _active is not None and _active.signum is not None:
        raise RunsInterrupted(_active.signum)


class StopSignals:
    """While active, SIGINT/SIGTERM end the runs cleanly (see the module docstring).

    `notify(line)` is told of the first signal; on a second one `stop_now(signum)` runs (in
    the watcher thread) and the process exits with 128 + signum. The default `stop_now`
    reports this process's unfinished runs failed, frees their slots and tells `error`
    (default `notify`). Enter it from the main thread.
    """

    def __init__(
        self,
        notify: Callable[[str], None] = print,
        error: Callable[[str], None] | None = None,
        stop_now: Callable[[int], None] | None = None,
    ) -> None:
        self._notify = notify
        self._error = error or notify
        self._stop_now = stop_now or self._fail_current_runs
        self.signum: int | None = None
        self._closing = False
        self._previous_mask: set[int] = set()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StopSignals:
        global _active
        if not SIGNAL_MASKS:
            return self
        self._previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        self._thread = threading.Thread(
            target=self._watch, name="market-assets-stop-signals", daemon=True
        )
        self._thread.start()
        _active = self
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        global _active
        if self._thread is None:
            return
        _active = None
        self._closing = True
        if self._thread.is_alive():
            signal.pthread_kill(self._thread.ident, signal.SIGINT)
            self._thread.join()
        # A signal that came after the watcher stopped is taken here, not by the defaults.
        while pending := signal.sigpending() & STOP_SIGNALS:
            signal.sigwait(pending)
        signal.pthread_sigmask(signal.SIG_SETMASK, self._previous_mask)

    def _watch(self) -> None:
        while True:
            signum = signal.sigwait(STOP_SIGNALS)
            if self._closing:
                return
            if self.signum is None:
                self.signum = signum
                self._notify(
                    f"{signal.Signals(signum).name}: stopping after the current run "
                    "(no further run starts); send it again to stop now"
                )
                continue
            try:
                self._stop_now(signum)
            finally:
                os._exit(128 + signum)

    def _fail_current_runs(self, signum: int) -> None:
        name = signal.Signals(signum).name
        with DagsterInstance.get() as instance:
            failed = fail_own_runs(
                instance, f"Stopped by a second {name} before it finished: marked failed."
            )
        runs = ", ".join(failed) or "none"
        self._error(
            f"{name} again: stopped now; run(s) {runs} marked failed (what they stored is not "
            "counted: run the same command again to replace it)"
        )

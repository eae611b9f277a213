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

While `StopSignals` is active, runs execute in a worker thread and the main thread waits for
them with the signal handlers installed: Dagster only takes over SIGINT/SIGTERM for a run
executed on the main thread (it then aborts the current step and returns a failed run, and
the caller starts the next one). Blocking the signals instead is no option: the subprocesses
Dagster starts during a run (compute-log `tail`s) would inherit the mask and ignore the
SIGTERM that ends them.
"""

from __future__ import annotations

import contextvars
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from types import FrameType, TracebackType
from typing import TypeVar

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
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
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

    def execute() -> ExecuteInProcessResult:
        return job.execute_in_process(
            run_config=dict(run_config),
            instance=instance,
            asset_selection=list(asset_selection),
            tags={**(tags or {}), **process_tags()},
            raise_on_error=False,
        )

    return execute() if _active is None else _active.run(execute)


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


Result = TypeVar("Result")


class StopSignals:
    """While active, SIGINT/SIGTERM end the runs cleanly (see the module docstring).

    `notify(line)` is told of the first signal; on a second one `stop_now(signum)` runs and
    the process exits with 128 + signum. The default `stop_now` reports this process's
    unfinished runs failed, frees their slots and tells `error` (default `notify`). Only the
    main thread handles signals: entered elsewhere it does nothing.
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
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        global _active
        if threading.current_thread() is threading.main_thread():
            self._previous = {
                signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS
            }
            _active = self
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        global _active
        if self._previous:
            _active = None
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)

    def run(self, work: Callable[[], Result]) -> Result:
        """`work()` in a worker thread (with this thread's context variables) while this
        thread waits, handling the signals."""
        context = contextvars.copy_context()
        outcome: dict[str, object] = {}

        def target() -> None:
            try:
                outcome["result"] = context.run(work)
            except BaseException as exc:  # re-raised in the caller's thread
                outcome["error"] = exc

        worker = threading.Thread(target=target, name="market-assets-run", daemon=True)
        worker.start()
        worker.join()
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        return outcome["result"]  # type: ignore[return-value]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            self._notify(
                f"{signal.Signals(signum).name}: stopping after the current run "
                "(no further run starts); send it again to stop now"
            )
            return
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

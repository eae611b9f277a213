"""Why a run failed, in one line: the first exception our code (or a vendor's) raised.

Dagster records a failed step as a STEP_FAILURE event whose error is its own wrapper
("Error occurred while executing op ...") with the user's exception as its cause. The CLI
prints the first exception in that chain that is not a Dagster wrapper, with the run id, and
keeps the whole chain for `--debug`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dagster import DagsterEventType, DagsterInstance
from dagster._utils.error import SerializableErrorInfo

DAGSTER_PREFIX = "Dagster"


@dataclass(frozen=True)
class RunFailure:
    """A failed run's root cause (`ExceptionClass: message`), where it happened, the trace."""

    run_id: str
    step: str | None
    cause: str
    trace: str

    def line(self) -> str:
        """One line for the terminal: run id, step and root cause."""
        where = f" in {self.step}" if self.step else ""
        return f"run {self.run_id}{where} failed: {self.cause}"


def root_cause(error: SerializableErrorInfo) -> SerializableErrorInfo:
    """The first error in `error`'s cause chain that is not a Dagster wrapper (else the
    innermost one)."""
    current: SerializableErrorInfo | None = error
    last = error
    while current is not None:
        if not current.cls_name or not current.cls_name.startswith(DAGSTER_PREFIX):
            return current
        last = current
        current = current.cause or current.context
    return last


def one_line(error: SerializableErrorInfo) -> str:
    """`Class: message` with the message's lines (and notes) joined by " | "."""
    lines = [line.strip() for line in (error.message or "").strip().splitlines() if line.strip()]
    text = " | ".join(lines)
    if not error.cls_name:
        return text
    # The message repeats the class, module-qualified: `package.module.Class: ...`.
    text = re.sub(rf"^[\w.]*\b{re.escape(error.cls_name)}: ", "", text)
    return f"{error.cls_name}: {text}"


def run_failure(instance: DagsterInstance, run_id: str) -> RunFailure:
    """The root cause of a failed run: its first step failure, else the run failure."""
    kinds = {DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}
    records = instance.get_records_for_run(run_id, of_type=kinds).records
    step_failures = [r for r in records if r.event_log_entry.dagster_event_type in kinds]
    for record in step_failures:
        event = record.event_log_entry.dagster_event
        if event is None or event.event_type != DagsterEventType.STEP_FAILURE:
            continue
        error = event.step_failure_data.error
        if error is not None:
            cause = root_cause(error)
            return RunFailure(run_id, event.step_key, one_line(cause), error.to_string())
    for record in step_failures:
        event = record.event_log_entry.dagster_event
        data = getattr(event, "job_failure_data", None) if event is not None else None
        if data is not None and data.error is not None:
            cause = root_cause(data.error)
            return RunFailure(run_id, None, one_line(cause), data.error.to_string())
        if data is not None and record.event_log_entry.message:
            message = record.event_log_entry.message
            return RunFailure(run_id, None, message, message)
    return RunFailure(run_id, None, "no failure event recorded (see the run in the UI)", "")

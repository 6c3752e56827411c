"""Status and progress PVs: what the RunEngine is doing and what happened last."""

from __future__ import annotations

import logging
import time
from typing import Any

from caproto import AlarmSeverity, AlarmStatus, ChannelType

from ..engine.events import (
    RUN_ENGINE_STATES,
    ExitStatus,
    PlanAccepted,
    PlanFinished,
    Progress,
    RunClosed,
    RunOpened,
    StateChanged,
    StatusMessage,
    WorkerEvent,
    WorkerRestarted,
)
from .common import clip_text, long_string, pv, write_alarmed, write_numeric_alarmed
from .context import IOCGroup

log = logging.getLogger(__name__)

#: Smallest change of ElapsedTime/RemainingTime worth a monitor update while a run goes on.
TIME_DEADBAND = 0.5

#: What a longin (DBF_LONG) holds. A count beyond it (a start document may say
#: ``num_points: 2**70``) is shown as the nearest end, with a MINOR alarm (status HIGH or LOW),
#: never wrapped round nor left for caproto to fail on for every client.
LONG_RANGE = (-(2**31), 2**31 - 1)


def fit_long(value: int) -> tuple[int, bool]:
    """``value`` clamped into :data:`LONG_RANGE`, and whether it had to be."""
    low, high = LONG_RANGE
    clamped = min(max(int(value), low), high)
    return clamped, clamped != value


async def write_long(channel: Any, value: int) -> None:
    """Publish a count on a longin: clamped, with a MINOR alarm while it does not fit."""
    clamped, clipped = fit_long(value)
    severity = AlarmSeverity.MINOR_ALARM if clipped else AlarmSeverity.NO_ALARM
    status = AlarmStatus.HIGH if value > 0 else AlarmStatus.LOW
    if clamped == channel.value and channel.alarm.severity == severity:
        return
    await write_numeric_alarmed(channel, clamped, severity, status)


_STATE_SEVERITY = {
    "paused": AlarmSeverity.MINOR_ALARM,
    "pausing": AlarmSeverity.MINOR_ALARM,
    "suspending": AlarmSeverity.MINOR_ALARM,
    "panicked": AlarmSeverity.MAJOR_ALARM,
}
_EXIT_SEVERITY = {
    ExitStatus.FAIL: AlarmSeverity.MAJOR_ALARM,
    ExitStatus.ABORT: AlarmSeverity.MINOR_ALARM,
}


class StatusGroup(IOCGroup):
    """Publishes worker events; the bridge calls :meth:`publish_event`/``publish_progress``."""

    state = pv(
        "State",
        "RunEngine state",
        value="idle",
        dtype=ChannelType.ENUM,
        enum_strings=RUN_ENGINE_STATES,
        record="mbbi",
        read_only=True,
    )
    status = long_string("Status", "Last event or refusal, in words", read_only=True)
    exit_status = pv(
        "ExitStatus",
        "Exit status of the last plan",
        value="none",
        dtype=ChannelType.ENUM,
        enum_strings=tuple(s.value for s in ExitStatus),
        record="mbbi",
        read_only=True,
    )
    busy = pv(
        "Busy",
        "A plan is in progress or paused",
        value=0,
        dtype=ChannelType.ENUM,
        enum_strings=("Idle", "Busy"),
        record="bi",
        read_only=True,
    )
    scan_id = pv("ScanId", "Scan id of current/last run", value=0, record="longin", read_only=True)
    run_uid = pv(
        "RunUid",
        "Start uid of current/last run",
        value="",
        dtype=ChannelType.STRING,
        record="stringin",
        read_only=True,
    )
    current_point = pv(
        "CurrentPoint", "Points taken in this run", value=0, record="longin", read_only=True
    )
    total_points = pv(
        "TotalPoints", "Points planned (0 unknown)", value=0, record="longin", read_only=True
    )
    progress = pv(
        "Progress",
        "Progress of the current run",
        value=0.0,
        record="ai",
        units="%",
        precision=1,
        lower_ctrl_limit=0.0,
        upper_ctrl_limit=100.0,
        read_only=True,
    )
    elapsed_time = pv(
        "ElapsedTime",
        "Time since the run started",
        value=0.0,
        record="ai",
        units="s",
        precision=1,
        read_only=True,
    )
    remaining_time = pv(
        "RemainingTime",
        "Estimated time left (-1 unknown)",
        value=-1.0,
        record="ai",
        units="s",
        precision=1,
        read_only=True,
    )
    plan_count = pv(
        "PlanCount", "Plans ended since start-up", value=0, record="longin", read_only=True
    )
    worker_restarts = pv(
        "WorkerRestarts",
        "Worker processes restarted",
        value=0,
        record="longin",
        read_only=True,
    )

    def urgent_channels(self) -> list[Any]:
        """The PVs a client must see change at once (the fan-out never batches them)."""
        return [self.state, self.exit_status, self.busy]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._run_start: float | None = None
        self._total: int | None = None
        self._last_progress: Progress | None = None
        self._plans_ended = 0

    # ------------------------------------------------------------- messages
    async def say(self, text: str) -> None:
        log.info("Status: %s", text)
        await write_alarmed(self.status, clip_text(text), AlarmSeverity.NO_ALARM)

    async def refuse(self, text: str) -> None:
        """Publish a refusal at once; the caller then fails the put."""
        # the one log line per refusal is ca.refusal_log's (rate-limited per client)
        log.debug("refused: %s", text)
        await write_alarmed(self.status, clip_text(f"refused: {text}"), AlarmSeverity.NO_ALARM)

    async def alarm(self, text: str) -> None:
        """Something in the IOC itself went wrong: a MAJOR alarm on Status until the next line."""
        log.error("Status (MAJOR): %s", text)
        await write_alarmed(self.status, clip_text(text), AlarmSeverity.MAJOR_ALARM)

    # --------------------------------------------------------------- events
    async def publish_event(self, event: WorkerEvent) -> None:
        if isinstance(event, StateChanged):
            severity = _STATE_SEVERITY.get(event.state, AlarmSeverity.NO_ALARM)
            if event.stuck:  # ending a plan for longer than the halt timeout: Halt gives it up
                severity = AlarmSeverity.MAJOR_ALARM
            await write_alarmed(self.state, event.state, severity)
        elif isinstance(event, PlanAccepted):
            self._run_start = None
            self._total = None
            self._last_progress = None
            await self.busy.write(1)
            await write_alarmed(self.exit_status, "none", AlarmSeverity.NO_ALARM)
            await self._write_progress(0, None, 0.0, -1.0)
            await self.context.start.write(1, verify_value=False)
        elif isinstance(event, RunOpened):
            self._run_start = event.start_time
            self._total = event.total_points
            self._last_progress = None
            await write_long(self.scan_id, event.scan_id)
            await self.run_uid.write(event.uid[:39])
            await self._write_progress(0, event.total_points, 0.0, -1.0)
        elif isinstance(event, RunClosed):
            if self._run_start is not None:
                await self.elapsed_time.write(max(0.0, time.time() - self._run_start))
            self._run_start = None
            await self.remaining_time.write(0.0)
        elif isinstance(event, PlanFinished):
            await self._publish_finish(event)
        elif isinstance(event, WorkerRestarted):
            await write_long(self.worker_restarts, event.count)
            await self.alarm(f"worker restarted ({event.count} since start-up): {event.reason}")
        elif isinstance(event, StatusMessage):
            await self.say(event.text)

    async def _publish_finish(self, event: PlanFinished) -> None:
        severity = _EXIT_SEVERITY.get(event.exit_status, AlarmSeverity.NO_ALARM)
        await write_alarmed(self.exit_status, event.exit_status.value, severity)
        uid = f" (run {event.run_uids[-1][:8]})" if event.run_uids else ""
        await self.say(f"{event.plan_name} {event.exit_status.value}: {event.message}{uid}")
        self._plans_ended += 1
        await write_long(self.plan_count, self._plans_ended)
        await self.busy.write(0)
        await self.context.start.write(0, verify_value=False)

    async def publish_progress(self, progress: Progress | None, now: float) -> None:
        if progress is not None:
            self._last_progress = progress
            await self._write_progress(
                progress.current_point,
                progress.total_points,
                progress.elapsed(now),
                progress.remaining(now),
            )
        elif self._run_start is not None:
            # no new point: keep the clocks moving
            await self._write_time(self.elapsed_time, max(0.0, now - self._run_start))
            if self._last_progress is not None:
                await self._write_time(self.remaining_time, self._last_progress.remaining(now))

    async def _write_time(self, channel: Any, seconds: float) -> None:
        """A clock moves on every tick: publish it when it moved TIME_DEADBAND or more.

        Each update goes to every monitoring client; with many clients the sends, not the
        plan, would set the pace. Resets (0, -1 unknown) and run ends are always published.
        """
        last = channel.value
        if seconds <= 0 or last <= 0 or abs(seconds - last) >= TIME_DEADBAND:
            await channel.write(seconds)

    async def _write_progress(
        self, current: int, total: int | None, elapsed: float, remaining: float
    ) -> None:
        await write_long(self.current_point, current)
        await write_long(self.total_points, total or 0)
        # from the counts themselves, not the clamped PVs
        percent = min(100.0, 100.0 * current / total) if total else 0.0
        if percent != self.progress.value:
            await self.progress.write(percent)
        await self._write_time(self.elapsed_time, elapsed)
        await self._write_time(self.remaining_time, remaining)

"""Our own scheduler: runs a batch every interval, obeys the fleet-wide start/stop switch.

Lifecycle: ``run()`` is the loop (a task the composition root starts); ``start()`` and
``stop()`` flip the switch stored in the database and answer at once; ``stop()`` also
tells the current batch to start no new send (the in-flight ones finish); ``shutdown()``
drains within a grace period. ``run_once()`` runs one batch now, for the CLI and tests.

Every instance on the database shares one switch and one batch slot per interval, so
``MESSAGE_BATCH_SIZE`` per ``SCHEDULER_INTERVAL`` holds for the fleet, not per process.
With ``SCHEDULER_INTERVAL=0`` it drains continuously: its ``Pump`` (``pump.py``), a sender pool
that refills as it drains, runs instead of the batch loop.

A database that does not answer is logged once when it goes and once when it is back, per
place (the tick loop, the heartbeat), not with a traceback per tick (``faults.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sms_dispatch import __version__
from sms_dispatch.delivery import BatchReport, Deliverer
from sms_dispatch.faults import log_failure
from sms_dispatch.logs import get_logger
from sms_dispatch.observability.outages import OutageLog
from sms_dispatch.ports import SWITCH_CHANGED, Clock, ControlStore, InstanceInfo
from sms_dispatch.pump import Pump

log = get_logger(__name__)

STATE_POLL_S = 5.0
"""The longest an idle instance waits before rereading the shared switch; shorter intervals poll
once per interval, so a start or stop made on any instance reaches every one within one interval."""
ERROR_BACKOFF_S = 2.0
HEARTBEAT_S = 5.0
"""How often a running dispatcher writes its heartbeat; it counts as live for 3 of these."""
LIVE_HEARTBEATS = 3


@dataclass(frozen=True, slots=True)
class SchedulerStatus:
    """What ``GET /scheduler`` shows."""

    running: bool
    in_batch: bool
    interval_s: float
    batch_size: int
    last_run_at: datetime | None
    next_run_at: datetime | None
    instance: str
    instances: tuple[InstanceInfo, ...] = ()
    """The dispatchers of the fleet that sent a heartbeat within the last 3 periods."""


class Dispatcher:
    """The scheduler loop around a ``Deliverer``."""

    def __init__(
        self,
        *,
        deliverer: Deliverer,
        control: ControlStore,
        clock: Clock,
        interval_s: float,
        instance_name: str,
        heartbeat_s: float = HEARTBEAT_S,
        pump: Pump | None = None,
    ) -> None:
        self._deliverer = deliverer
        self._pump = pump
        """Continuous mode's sender pool: ``run()`` needs one when interval is 0 (``run_once`` does not)."""
        self._control = control
        self._clock = clock
        self.interval_s = interval_s
        self.instance_name = instance_name
        self._wake = asyncio.Event()
        self._stop_sends = asyncio.Event()
        self._closing = False
        self._in_batch = False
        self.last_report: BatchReport | None = None
        self.heartbeat_s = heartbeat_s
        self._heartbeat: asyncio.Task[None] | None = None
        self._tick_outage = OutageLog("database", "dispatcher tick", logger=log)
        self._heartbeat_outage = OutageLog("database", "heartbeat", logger=log)

    async def run(self) -> None:
        """Loop until ``shutdown()``: take each batch slot the fleet grants us and deliver."""
        pump = self._pump
        if self.interval_s == 0 and pump is None:
            raise ValueError("continuous mode (interval 0) needs a Pump to run")
        log.info("dispatcher running", interval_s=self.interval_s, instance=self.instance_name)
        started_at = self._clock.now()
        try:
            if pump is not None and self.interval_s == 0:
                self._watch_heartbeat(started_at)
                await pump.run()
                return
            while not self._closing:
                self._watch_heartbeat(started_at)
                wait_s = await self._tick_logged()
                if wait_s > 0 and not self._closing:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
        finally:
            await self._stop_heartbeat()

    async def _tick_logged(self) -> float:
        """Run a tick; a failure is logged (an outage once, a bug with its traceback) and waited out."""
        try:
            wait_s = await self._tick()
        except Exception as exc:
            log_failure(exc, "dispatcher tick failed; retrying", outage=self._tick_outage, logger=log)
            return ERROR_BACKOFF_S
        self._tick_outage.succeeded()
        return wait_s

    def _watch_heartbeat(self, started_at: datetime) -> None:
        """Start the heartbeat side task, and start it again if it ever ended (it should not)."""
        task = self._heartbeat
        if task is not None and task.done():
            error = None if task.cancelled() else task.exception()
            log.error("heartbeat task ended; restarting it", error=repr(error))
        if task is None or task.done():
            self._heartbeat = asyncio.create_task(self._beat(started_at), name="heartbeat")

    async def _beat(self, started_at: datetime) -> None:
        """Write this instance's heartbeat every ``heartbeat_s``; a failed beat is logged, not fatal."""
        host, pid = socket.gethostname(), os.getpid()
        while True:
            info = InstanceInfo(self.instance_name, host, pid, __version__, started_at, self._clock.now())
            try:
                await asyncio.wait_for(self._control.heartbeat(info), timeout=self.heartbeat_s)
            except Exception as exc:
                log_failure(exc, "heartbeat failed", outage=self._heartbeat_outage, logger=log)
            else:
                self._heartbeat_outage.succeeded()
            await asyncio.sleep(self.heartbeat_s)

    async def _stop_heartbeat(self) -> None:
        """Stop the heartbeat and take this instance off the fleet's list."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        try:
            await asyncio.wait_for(self._control.remove_instance(self.instance_name), timeout=5.0)
        except Exception as exc:
            log.warning("could not remove the instance row", instance=self.instance_name, error=str(exc))

    async def _tick(self) -> float:
        """Run a batch if a slot is ours; return how long to wait before the next look."""
        state = await self._control.scheduler_state()
        if not state.running:
            return self._state_poll_s
        if await self._control.take_batch_slot(now=self._clock.now(), interval_s=self.interval_s):
            await self._run_batch()
            return min(STATE_POLL_S, self.interval_s)
        state = await self._control.scheduler_state()
        if state.last_run_at is None:
            return self._state_poll_s
        due_in_s = (
            state.last_run_at + timedelta(seconds=self.interval_s) - self._clock.now()
        ).total_seconds()
        return max(0.05, min(STATE_POLL_S, due_in_s))

    @property
    def _state_poll_s(self) -> float:
        """How long an instance that runs no batch waits before rereading the switch."""
        return max(0.05, min(STATE_POLL_S, self.interval_s))

    async def _run_batch(self) -> BatchReport:
        self._stop_sends.clear()
        self._in_batch = True
        try:
            report = await self._deliverer.deliver_batch(self._stop_sends)
        finally:
            self._in_batch = False
        self.last_report = report
        if report.claimed or report.rescued:
            log.info(
                "batch done",
                claimed=report.claimed,
                delivered=report.delivered,
                retried=report.retried,
                failed=report.failed,
                handed_back=report.handed_back,
                rescued=report.rescued,
                duration_ms=round(report.duration_s * 1000, 1),
            )
        return report

    async def run_once(self) -> BatchReport:
        """Run one batch now, whatever the schedule and the switch say."""
        return await self._run_batch()

    async def start(self) -> SchedulerStatus:
        """Turn the fleet-wide switch on; the next slot runs at once if it is due."""
        await self._control.set_running(True, now=self._clock.now())
        log.info("scheduler started", instance=self.instance_name)
        self._wake.set()
        if self._pump is not None:
            self._pump.wake(SWITCH_CHANGED)
        return await self.status()

    async def stop(self) -> SchedulerStatus:
        """Turn the fleet-wide switch off; the current batch starts no new send."""
        await self._control.set_running(False, now=self._clock.now())
        self._stop_sends.set()
        if self._pump is not None:
            self._pump.stop_sends()
        log.info("scheduler stopped", instance=self.instance_name)
        return await self.status()

    async def status(self) -> SchedulerStatus:
        """Return the switch, the last batch slot taken in the fleet and the next one, and the
        instances seen within ``LIVE_HEARTBEATS`` heartbeat periods."""
        state = await self._control.scheduler_state()
        now = self._clock.now()
        seen_since = now - timedelta(seconds=LIVE_HEARTBEATS * self.heartbeat_s)
        instances = tuple(await self._control.live_instances(seen_since=seen_since))
        next_run_at = None
        if state.running:
            due = state.last_run_at + timedelta(seconds=self.interval_s) if state.last_run_at else now
            next_run_at = max(due, now)
        return SchedulerStatus(
            running=state.running,
            in_batch=self._in_batch or (self._pump is not None and self._pump.busy),
            interval_s=self.interval_s,
            batch_size=self._deliverer.policy.batch_size,
            last_run_at=state.last_run_at,
            next_run_at=next_run_at,
            instance=self.instance_name,
            instances=instances,
        )

    async def shutdown(self, task: asyncio.Task[None], *, grace_s: float) -> None:
        """Stop claiming, let in-flight sends finish within ``grace_s``, hand back the rest."""
        self._closing = True
        self._stop_sends.set()
        self._wake.set()
        if self._pump is not None:
            self._pump.close()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace_s)
        except TimeoutError:
            log.warning("grace period over; cancelling in-flight sends", grace_s=grace_s)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._deliverer.drain_cache_writes()
        log.info("dispatcher stopped", instance=self.instance_name)

"""The gate: access security, the baton, the plan policy and the audit log, on caproto.

caproto asks each channel ``check_access(hostname, username)`` when a client connects
(the answer is the CA access-rights message) and calls ``auth_write(hostname, username,
...)`` for every write. The gate replaces both on each served channel (instance attributes,
set once, like :func:`.common.guard_writes`), so that every read right and every write is
decided by :class:`~runengine_ioc.access.control.AccessControl` with the client's claimed
user and host. A write that passes runs with its :class:`Caller` in a context variable, so
that the putters' ``commands.submit`` (Start, a form's Start, Submit) learn who asked
without caproto passing it: :class:`GatedCommands` checks the plan policy and records the
caller in the start document.

caproto sends access rights only at connect; :meth:`Gate.refresh` sends new ones on every
circuit of the server (``Context.circuits``) for each channel whose rights changed, so a
client's widgets grey out or come back at once when the baton moves or the file is
reloaded.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import caproto as ca
from caproto import AccessRights

from ..access.acf import AccessConfig, ACFError
from ..access.audit import AuditLog, AuditRecord
from ..access.control import AccessControl
from ..access.groups import group_of
from ..access.identity import Caller, Client
from ..access.policy import PlanPolicy, PolicyRefusal, devices_named
from ..engine.catalog import RegistryView
from ..engine.commands import Commands
from ..engine.events import PlanFinished
from ..engine.registry import ArgumentError

log = logging.getLogger(__name__)

#: The start-document key that records who started the run (a client may not set it).
STARTED_BY = "started_by"

#: The client behind the write being handled (set by the gate, read by GatedCommands).
CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "runengine_ioc_caller", default=None
)

_RIGHTS = {
    0: AccessRights.NO_ACCESS,
    1: AccessRights.READ,
    2: AccessRights.READ | AccessRights.WRITE,
}


class AccessDenied(ca.CaprotoError):
    """A write the gate refused (the client sees caproto's put failure)."""


def current_caller() -> Caller | None:
    """The client whose write is being handled, None outside a client's write."""
    return CALLER.get()


@dataclass
class GateSettings:
    """What the command line gives the gate (see :class:`Gate`)."""

    control: AccessControl = field(default_factory=AccessControl)
    audit: AuditLog | None = None
    policy: PlanPolicy | None = None
    acf_path: str | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    policy_from_profile: bool = False  # no --policy: Reload takes the profile's anew

    def mode(self) -> str:
        """The Access:Mode PV: ``open``, or ``acf <file name>`` (40 characters at most)."""
        return "open" if self.acf_path is None else f"acf {Path(self.acf_path).name}"[:39]

    def describe(self) -> str:
        """One phrase for the start-up Status line."""
        if self.acf_path is None:
            return "access open (no --acf): any client may write"
        return f"access security from {self.acf_path}"


class Gate:
    """Rights, refusals and the audit line for every served channel.

    Parameters
    ----------
    settings
        The rules and the baton (``control``), the audit log (None: no file), the plan
        policy (None: none), the access security file (re-read by :meth:`reload`) and
        the PV-name patterns (after the prefix) assigned to other groups.
    refuse
        Says a refusal in Status.
    registry
        The registry in service (for the device names of a plan's arguments).
    """

    def __init__(
        self,
        settings: GateSettings,
        *,
        refuse: Callable[[str], Awaitable[None]],
        registry: Callable[[], RegistryView],
    ) -> None:
        self.settings = settings
        self.control = settings.control
        self.audit = settings.audit
        self.policy = settings.policy
        self.acf_path = settings.acf_path
        self.overrides = dict(settings.overrides)
        self.refuse = refuse
        self.registry = registry
        self.pvdb: Mapping[str, Any] | None = None  # the IOC's PVs: CALC rules' inputs
        self.control.read_input = self.read_input
        self.groups: dict[str, str] = {}  # full PV name -> access security group
        self.server: Any = None  # the caproto server Context, once serving
        self.on_audit: Callable[[AuditRecord], Awaitable[None]] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._rights_cache: dict[tuple[str, bool, Any, Any], AccessRights] = {}
        self._watched: set[str] = set()  # CALC inputs whose changes re-send rights

    # -- installing ---------------------------------------------------------------------

    def install(self, pvdb: Mapping[str, Any], prefix: str, *, form: bool = False) -> None:
        """Gate every channel of ``pvdb`` (the fixed PVs once, each form as it is built)."""
        if self.pvdb is None:
            self.pvdb = pvdb  # the IOC's own dictionary, which its forms join
        for name, channel in pvdb.items():
            if "." in name:
                continue
            label = name.removeprefix(prefix)
            writable = AccessRights.WRITE in channel.check_access(None, None)
            group = group_of(label, self.overrides, form=form, writable=writable)
            self.groups[name] = group
            self._gate(channel, label, group, writable)
            # record fields: the PV's group; read-only while an access security file is in
            # service; their writes (and refusals) audited like the PVs'
            fields = getattr(getattr(channel, "field_inst", None), "pvdb", None) or {}
            for field_name, record_field in fields.items():
                if record_field is channel:
                    continue
                field_writable = self.control.open and (
                    AccessRights.WRITE in record_field.check_access(None, None)
                )
                self._gate(record_field, f"{label}.{field_name}", group, field_writable)
        if not form:
            self.watch_calc_inputs()

    def watch_calc_inputs(self) -> None:
        """Rights decided by a CALC rule follow its inputs: when one of the IOC's own PVs that
        an ``INPx`` names changes, the new rights are sent to connected clients at once (as
        the baton's are), so widgets grey out or come back without reconnecting."""
        config = self.control.config
        if config is None or self.pvdb is None:
            return
        names = {pvname for group in config.groups.values() for pvname in group.inputs.values()}
        for name in sorted(names - self._watched):
            channel = self.pvdb.get(name)
            if channel is None:
                continue  # not ours: evaluated at connect and at each write
            self._watched.add(name)
            original = channel.write

            async def write(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                result = await _original(*args, **kwargs)
                self._refresh_soon()
                return result

            channel.write = write

    def _refresh_soon(self) -> None:
        """Send new rights in the background: a stalled client must not hold up the write."""

        async def refresh() -> None:
            await self.refresh()

        task = asyncio.ensure_future(refresh())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _gate(self, channel: Any, label: str, group: str, writable: bool) -> None:
        channel.check_access = functools.partial(self._rights, group, writable)
        channel.auth_write = functools.partial(self._auth_write, channel, label, group, writable)

    def read_input(self, name: str) -> float | None:
        """The value of an ACF input (``INPA``...) served by this IOC; None if not ours.

        An enum reads as its state's index, as a DBR_DOUBLE of it would.
        """
        channel = self.pvdb.get(name) if self.pvdb is not None else None
        if channel is None:
            return None
        value = channel.value
        states = getattr(channel, "enum_strings", None)
        if isinstance(value, str) and states and value in states:
            return float(list(states).index(value))
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    def _rights(self, group: str, writable: bool, host: Any, user: Any) -> AccessRights:
        # caproto asks on every read: cached until the next refresh() (every change of the
        # rules or the baton ends with one), except for groups with CALC rules
        key = (group, writable, host, user)
        rights = self._rights_cache.get(key)
        if rights is None:
            grant = self.control.grant(group, Client(user or "", host or ""))
            rights = _RIGHTS[min(grant.access, 2 if writable else 1)]
            config = self.control.config
            if config is None or not config.group(group).uses_calc:
                self._rights_cache[key] = rights
        return rights

    # -- writes -------------------------------------------------------------------------

    async def _auth_write(
        self,
        channel: Any,
        label: str,
        group: str,
        writable: bool,
        hostname: Any,
        username: Any,
        data: Any,
        data_type: Any,
        metadata: Any,
        *,
        flags: int = 0,
        user_address: Any = None,
    ) -> Any:
        client = Client(username or "", hostname or "")
        arrived = time.time()
        if writable:
            reason = self.control.write_refusal(group, client)
        elif "." in label:
            reason = "record fields are not writable by clients (access security in service)"
        else:
            reason = "read-only PV"
        if reason is not None:
            self.record(client, label, data, False, reason, when=arrived)
            await self.refuse(f"{label}: {reason}")
            raise AccessDenied(reason)
        self.control.baton.touch(client)
        caller = Caller(client, label, data, arrived)
        token = CALLER.set(caller)
        try:
            result = await channel.write_from_dbr(data, data_type, metadata, flags=flags)
        except BaseException as exc:
            if not caller.audited:
                reason = str(exc) or type(exc).__name__
                self.record(client, label, data, False, reason, when=arrived)
            raise
        finally:
            CALLER.reset(token)
        if not caller.audited:
            self.record(client, label, data, True, when=arrived)
        return result

    def record(
        self,
        client: Client,
        pv: str,
        value: Any,
        accepted: bool,
        reason: str = "",
        *,
        when: float | None = None,
    ) -> None:
        """One audit line, and Audit:Last (published from a task: this may run anywhere)."""
        if self.audit is None:
            return
        try:
            entry = self.audit.record(client, pv, value, accepted, reason, when=when)
        except OSError as exc:  # a full disk must not turn writes away
            log.error("audit log %s: %s", self.audit.path, exc)
            return
        if self.on_audit is not None:
            task = asyncio.ensure_future(self.on_audit(entry))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    # -- changes ------------------------------------------------------------------------

    def apply_profile(self, policy: Mapping[str, Any] | None) -> None:
        """A reloaded profile's ``access_policy`` (unless ``--policy`` names a file); PolicyError
        if it is malformed (the policy in service stays). Its ``access_groups`` take effect
        at the next start (the PVs' groups are fixed when they are served)."""
        if self.settings.policy_from_profile:
            self.policy = (
                None if policy is None else PlanPolicy.from_mapping(policy, "access_policy")
            )

    def reload(self) -> str:
        """Re-read the access security file (ACFError: the old rules stay in service)."""
        if self.acf_path is None:
            return "no access security file in service (access is open)"
        config = AccessConfig.from_file(self.acf_path)
        self.control.reload(config)
        self.watch_calc_inputs()
        return f"access security reloaded from {self.acf_path}: groups {', '.join(config.groups)}"

    async def refresh(self) -> int:
        """Send new access rights to connected clients whose rights changed; how many sent."""
        self._rights_cache.clear()
        server = self.server
        if server is None:
            return 0
        sent = 0
        for circuit in list(server.circuits):
            updates = []
            for cid, chan in list(circuit.circuit.channels.items()):
                if chan.states[ca.SERVER] is not ca.CONNECTED:
                    continue
                try:
                    entry = server[chan.name]
                except (KeyError, ca.CaprotoKeyError):
                    continue  # a retired form's PV
                rights = entry.check_access(circuit.client_hostname, circuit.client_username)
                if rights != chan.access_rights:
                    updates.append(ca.AccessRightsResponse(cid=cid, access_rights=rights))
            if updates:
                try:
                    await circuit.send(*updates)
                    sent += len(updates)
                except Exception as exc:  # a circuit going away as we send
                    log.debug("access rights not sent to %s: %s", circuit, exc)
        return sent


class GatedCommands:
    """The bridge's commands, with the plan policy and the caller's identity on submit."""

    def __init__(self, inner: Commands, gate: Gate) -> None:
        self.inner = inner
        self.gate = gate

    @property
    def state(self) -> str:
        return self.inner.state

    @property
    def busy(self) -> bool:
        return self.inner.busy

    async def submit(
        self, plan_name: str, arguments: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> asyncio.Future[PlanFinished]:
        """Check the policy for the client that asked, then submit with ``started_by``."""
        caller, metadata = self._admit(plan_name, arguments, metadata)
        future = await self.inner.submit(plan_name, arguments, metadata)
        self._record(caller, plan_name)
        return future

    async def submit_next(
        self, plan_name: str, arguments: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> asyncio.Future[PlanFinished] | None:
        """As :meth:`submit`, for a plan handed over to follow the current one."""
        caller, metadata = self._admit(plan_name, arguments, metadata)
        future = await self.inner.submit_next(plan_name, arguments, metadata)
        if future is not None:
            self._record(caller, plan_name)
        return future

    async def cancel_next(self) -> None:
        await self.inner.cancel_next()

    def _admit(
        self, plan_name: str, arguments: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> tuple[Caller | None, Mapping[str, Any]]:
        """The caller, and the metadata to run with; ArgumentError if the policy refuses."""
        caller = current_caller()
        if STARTED_BY in metadata:
            raise ArgumentError(f"Metadata may not set {STARTED_BY} (the IOC records who)")
        if caller is None:  # not a client's write (the IOC itself)
            return None, metadata
        policy = self.gate.policy
        if policy is not None:
            devices = devices_named(self.gate.registry(), plan_name, arguments)
            try:
                policy.check(caller.client, plan_name, devices)
            except PolicyRefusal as exc:
                raise ArgumentError(str(exc)) from None
        return caller, {**metadata, STARTED_BY: caller.as_metadata()}

    def _record(self, caller: Caller | None, plan_name: str) -> None:
        if caller is None:
            return
        caller.audited = True
        self.gate.record(
            caller.client, caller.pv, caller.value, True, f"runs {plan_name}", when=caller.arrived
        )

    async def wait_current_plan(self) -> PlanFinished | None:
        return await self.inner.wait_current_plan()

    async def pause(self, defer: bool = False) -> None:
        await self.inner.pause(defer)

    async def resume(self) -> None:
        await self.inner.resume()

    async def stop(self) -> None:
        await self.inner.stop()

    async def abort(self, reason: str = "") -> None:
        await self.inner.abort(reason)

    async def halt(self) -> None:
        await self.inner.halt()


__all__ = [
    "CALLER",
    "STARTED_BY",
    "ACFError",
    "Gate",
    "GateSettings",
    "GatedCommands",
    "current_caller",
]

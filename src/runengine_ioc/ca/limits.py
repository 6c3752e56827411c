"""Limits a client reads with the value: control, display and alarm limits, as EPICS serves them.

A Channel Access client does not read ``DRVL`` or ``HOPR``: it reads the limits that come with
the value (``DBR_CTRL_*``: pyepics ``get_ctrlvars``, ophyd ``.limits``, PyDM's and Phoebus's
spinboxes and sliders). caproto keeps those in the channel's metadata, apart from the record's
fields, and serves 0/0 unless told. EPICS base serves, for the record types used here:

- ao, longout: control limits ``DRVL``/``DRVH``, display limits ``LOPR``/``HOPR``;
- ai, longin: ``LOPR``/``HOPR`` as both;
- alarm limits (``HIHI``/``HIGH``/``LOW``/``LOLO``) as NaN while their severity is NO_ALARM,
  i.e. "no such limit" (a DOUBLE-typed request; integer types cannot carry NaN).

:func:`serve_limits` puts a form parameter's bounds in all of those places at once;
:func:`epics_limits` gives the IOC's own numeric PVs EPICS's display and alarm limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from caproto import ChannelType
from caproto._data import CannotExceedLimits

#: The widest range of a longout (DBF_LONG): a one-sided integer bound is completed with it.
INT32_RANGE = (-(2**31), 2**31 - 1)
#: A one-sided floating-point bound is completed with an infinity (as DBR_CTRL_DOUBLE allows).
FLOAT_RANGE = (-math.inf, math.inf)

_NUMERIC = (ChannelType.DOUBLE, ChannelType.FLOAT, ChannelType.LONG, ChannelType.INT)
_ALARM_LIMITS = (
    "upper_alarm_limit",
    "upper_warning_limit",
    "lower_warning_limit",
    "lower_alarm_limit",
)


def completed(
    low: float | None, high: float | None, *, integer: bool
) -> tuple[float, float] | None:
    """Both ends of a range of which a plan's annotation may give one (None: no limits)."""
    if low is None and high is None:
        return None
    widest = INT32_RANGE if integer else FLOAT_RANGE
    return (widest[0] if low is None else low, widest[1] if high is None else high)


async def serve_limits(channel: Any, low: float | None, high: float | None) -> None:
    """Serve a parameter's bounds as the limits clients read: control, display, DRVL/DRVH.

    The putter still checks every value against the registry and says why in its own words:
    caproto checks the control limits before the putter runs, so a value it turns away is
    handed to the putter for the refusal's message (see :func:`_putter_speaks_first`).
    """
    integer = channel.data_type in (ChannelType.LONG, ChannelType.INT)
    bounds = completed(low, high, integer=integer)
    if bounds is None:
        return
    lo, hi = (int(b) for b in bounds) if integer else bounds
    await channel.write_metadata(
        lower_ctrl_limit=lo,
        upper_ctrl_limit=hi,
        lower_disp_limit=lo,
        upper_disp_limit=hi,
    )
    fields = getattr(channel, "fields", None) or {}
    for name, bound in (("DRVL", lo), ("DRVH", hi)):
        field = fields.get(name)
        if field is not None:
            await field.write(bound)
    _putter_speaks_first(channel)


def _putter_speaks_first(channel: Any) -> None:
    """On a value outside the control limits, let the putter refuse it (once per channel).

    caproto's ``ChannelNumeric.verify_value`` raises ``CannotExceedLimits`` ("Cannot write data
    0. Limits are set to 1 and 2147483647.") before the pvproperty's putter is called; the
    putter's refusal names the plan, the argument and the bound, and reports it in Status.
    """
    if getattr(channel, "_limits_refused_by_putter", False):
        return
    original = channel.verify_value

    async def verify_value(value: Any) -> Any:
        try:
            return await original(value)
        except CannotExceedLimits:
            if channel.putter is not None:
                await channel.putter(channel, value)  # raises the registry's refusal
            raise

    channel.verify_value = verify_value
    channel._limits_refused_by_putter = True


async def epics_limits(pvdb: Mapping[str, Any]) -> None:
    """The IOC's own numeric records as EPICS reports them: an ai's or longin's display limits
    are its control limits (``LOPR``/``HOPR``), and the floating-point records' alarm limits are
    NaN (their alarms come from the IOC's state, not from limits)."""
    for name, channel in pvdb.items():
        if "." in name or channel.data_type not in _NUMERIC or channel.max_length != 1:
            continue  # waveforms carry no limits
        changes: dict[str, float] = {}
        record = getattr(channel, "record_type", None)
        if record in ("ai", "longin") and channel.lower_disp_limit == channel.upper_disp_limit:
            changes.update(
                lower_disp_limit=channel.lower_ctrl_limit,
                upper_disp_limit=channel.upper_ctrl_limit,
            )
        if channel.data_type in (ChannelType.DOUBLE, ChannelType.FLOAT):
            changes.update({attr: math.nan for attr in _ALARM_LIMITS})
        if changes:
            await channel.write_metadata(publish=False, **changes)

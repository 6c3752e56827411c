"""One log line per refused put, rate-limited per client, instead of caproto's traceback.

caproto's server logs every write that raises with ``log.exception('Invalid write request by
%s (%s): %r', username, hostname, command)`` on the ``caproto.circ`` logger (``handle_write``
in ``caproto/server/common.py``): a full traceback, about 2.5 kB, for what is a client's
mistake (a bad value, a refused Start), and one client putting junk in a loop fills the log at
megabytes a second. :class:`RefusalLog` is a filter on that logger: it drops caproto's record
and logs one line instead (who, which PV, why), at most ``burst`` lines per client in each
``period`` seconds, then says how many it left out. The traceback goes to DEBUG, for when one
is wanted (``-v``). caproto's record carries the client's claimed user and host; the PV comes
from the mark :func:`~.common.guard_writes` puts on the exception.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .common import refused_pv

log = logging.getLogger(__name__)

#: The message caproto logs (with a traceback) for a write that raised.
CAPROTO_WRITE_FAILURE = "Invalid write request by %s (%s): %r"
#: The logger caproto's server circuits log on.
CAPROTO_CIRCUIT_LOGGER = "caproto.circ"
#: At most this many lines per client...
DEFAULT_BURST = 5
#: ... in each window of this many seconds.
DEFAULT_PERIOD = 10.0
#: Clients remembered at most; the quiet ones are forgotten first.
MAX_CLIENTS = 1024


@dataclass
class _Window:
    start: float
    logged: int = 0
    left_out: int = 0


class RefusalLog(logging.Filter):
    """A filter for caproto's circuit logger: one rate-limited line per refused put.

    Parameters
    ----------
    burst, period
        Lines logged per client in each window of ``period`` seconds; the rest are counted
        and the count is given with the client's next line after the window.
    clock
        Monotonic seconds (a test gives its own).
    logger
        Where the lines go.
    """

    def __init__(
        self,
        *,
        burst: int = DEFAULT_BURST,
        period: float = DEFAULT_PERIOD,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.period = period
        self._clock = clock
        self._log = logger
        self._windows: dict[str, _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop it) for caproto's failed-write record, after logging our line."""
        if record.msg != CAPROTO_WRITE_FAILURE or not isinstance(record.args, tuple):
            return True
        username, hostname = (*record.args, "", "")[:2]
        exc = record.exc_info[1] if record.exc_info else None
        reason = (str(exc) or type(exc).__name__) if exc is not None else "refused"
        self.refused(f"{username or '?'}@{hostname or '?'}", refused_pv(exc), reason)
        if exc is not None and self._log.isEnabledFor(logging.DEBUG):
            self._log.debug("traceback of the refused put above", exc_info=record.exc_info)
        return False

    def refused(self, client: str, pv: str | None, reason: str) -> bool:
        """Log one refusal of ``client``'s put unless over its rate; True if logged."""
        now = self._clock()
        window = self._windows.get(client)
        if window is None or now - window.start >= self.period:
            left_out = window.left_out if window is not None else 0
            window = _Window(now)
            self._windows.pop(client, None)
            self._windows[client] = window  # the most recent last
            self._forget_quiet_clients()
        else:
            left_out = 0
        if window.logged >= self.burst:
            window.left_out += 1
            return False
        window.logged += 1
        where = f" to {pv}" if pv else ""
        earlier = (
            f" ({left_out} more refused puts from {client} not logged before this)"
            if left_out
            else ""
        )
        self._log.info("refused put by %s%s: %s%s", client, where, reason, earlier)
        return True

    def _forget_quiet_clients(self) -> None:
        while len(self._windows) > MAX_CLIENTS:
            del self._windows[next(iter(self._windows))]


def install_refusal_log(
    logger: logging.Logger | None = None,
    *,
    burst: int = DEFAULT_BURST,
    period: float = DEFAULT_PERIOD,
) -> Callable[[], None]:
    """Put a :class:`RefusalLog` on caproto's circuit logger; returns what removes it.

    A logger is process-wide: the IOC installs this once, in ``main``, and removes it when
    it has served.
    """
    target = logger or logging.getLogger(CAPROTO_CIRCUIT_LOGGER)
    refusals = RefusalLog(burst=burst, period=period)
    target.addFilter(refusals)
    return lambda: target.removeFilter(refusals)

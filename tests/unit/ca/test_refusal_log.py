"""One log line per refused put, rate-limited per client, the traceback only at DEBUG.

The records are made the way caproto's server makes them (``log.exception`` on the circuit
logger, with the client's user and host, inside the ``except`` of a failed write), on a
private logger so that nothing global is touched.
"""

from __future__ import annotations

import logging
import uuid

import pytest

from runengine_ioc.ca.common import mark_refused_pv
from runengine_ioc.ca.refusal_log import CAPROTO_WRITE_FAILURE, install_refusal_log
from runengine_ioc.engine.registry import ArgumentError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def circuit_logger():  # type: ignore[no-untyped-def]
    """A logger standing for caproto's ``caproto.circ``, with the filter installed."""
    logger = logging.getLogger(f"test.caproto.circ.{uuid.uuid4().hex}")
    logger.setLevel(logging.DEBUG)
    remove = install_refusal_log(logger, burst=3, period=10.0)
    yield logger
    remove()


def caproto_refuses(logger: logging.Logger, user: str, host: str, pv: str | None) -> None:
    """What caproto's handle_write does when a write raises."""
    try:
        exc = ArgumentError("unknown plan 'launch_rocket'")
        if pv is not None:
            mark_refused_pv(exc, pv)
        raise exc
    except ArgumentError:
        logger.exception(CAPROTO_WRITE_FAILURE, user, host, "WriteNotifyRequest(data=[...])")


def lines(caplog, level: int) -> list[logging.LogRecord]:  # type: ignore[no-untyped-def]
    return [
        r for r in caplog.records if r.name == "runengine_ioc.ca.refusal_log" and r.levelno == level
    ]


def test_a_refusal_is_one_line_naming_client_pv_and_reason_without_traceback(
    circuit_logger, caplog
):
    caplog.set_level(logging.INFO)
    caproto_refuses(circuit_logger, "alice", "ws1", "PlanName")
    assert [r.name for r in caplog.records] == ["runengine_ioc.ca.refusal_log"]
    (record,) = caplog.records
    assert (
        record.getMessage() == "refused put by alice@ws1 to PlanName: unknown plan 'launch_rocket'"
    )
    assert record.exc_info is None
    assert "Traceback" not in caplog.text and "Invalid write request" not in caplog.text


def test_the_traceback_is_there_at_debug(circuit_logger, caplog):
    caplog.set_level(logging.DEBUG)
    caproto_refuses(circuit_logger, "alice", "ws1", None)
    (info,) = lines(caplog, logging.INFO)
    assert info.getMessage() == "refused put by alice@ws1: unknown plan 'launch_rocket'"
    (debug,) = lines(caplog, logging.DEBUG)
    assert debug.exc_info is not None and debug.exc_info[0] is ArgumentError
    assert not [r for r in caplog.records if r.name == circuit_logger.name]


def test_a_flood_from_one_client_is_rate_limited_and_counted_other_clients_are_not(
    circuit_logger, caplog, monkeypatch
):
    caplog.set_level(logging.INFO)
    clock = Clock()
    (refusals,) = circuit_logger.filters
    monkeypatch.setattr(refusals, "_clock", clock)
    for _ in range(1000):
        caproto_refuses(circuit_logger, "mallory", "bot", "Start")
    caproto_refuses(circuit_logger, "alice", "ws1", "PlanArgs")
    messages = [r.getMessage() for r in lines(caplog, logging.INFO)]
    assert len(messages) == 3 + 1
    assert messages[-1].startswith("refused put by alice@ws1 to PlanArgs")

    clock.now += 10.0  # the next window: the flood's count comes with the next line
    caproto_refuses(circuit_logger, "mallory", "bot", "Start")
    last = lines(caplog, logging.INFO)[-1].getMessage()
    assert last.endswith("(997 more refused puts from mallory@bot not logged before this)")
    assert len(caplog.text) < 2000  # a thousand refusals: a few hundred bytes, not 2.5 MB


def test_other_caproto_records_pass_untouched(circuit_logger, caplog):
    caplog.set_level(logging.INFO)
    circuit_logger.warning("High load. Dropped %d responses.", 3)
    (record,) = caplog.records
    assert record.name == circuit_logger.name

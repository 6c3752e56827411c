"""Document sinks across processes: bluesky's 0MQ (with and without its proxy), a real Tiled
server, and sinks that fail without changing the plan's outcome."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runengine_ioc.data.files import read_run, run_table
from tests.polling import wait_until

from .conftest import _free_port

LISTENER = Path(__file__).with_name("zmq_listener.py")
BIN = Path(sys.executable).parent
SCAN = {"detectors": ["det"], "motor": "motor", "start": -1, "stop": 1, "num": 7}


class RemoteListener:
    """bluesky's RemoteDispatcher in another process, collecting every document it gets."""

    def __init__(self, address: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(LISTENER), address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        assert json.loads(self.proc.stdout.readline()).get("ready")
        self.documents: list[tuple[str, dict]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            item = json.loads(line)
            self.documents.append((item["name"], item["doc"]))

    def run(self, uid: str) -> list[tuple[str, dict]]:
        """The documents of one run, in the order received."""
        start = next(d for n, d in self.documents if n == "start" and d["uid"] == uid)
        descriptors = {d["uid"] for n, d in self.documents if d.get("run_start") == uid}
        return [
            (n, d)
            for n, d in self.documents
            if d is start or d.get("run_start") == uid or d.get("descriptor") in descriptors
        ]

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def listen() -> Iterator[Callable[[str], RemoteListener]]:
    made: list[RemoteListener] = []

    def make(address: str) -> RemoteListener:
        made.append(RemoteListener(address))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


def subscribed(ioc, listener: RemoteListener) -> None:  # type: ignore[no-untyped-def]
    """0MQ drops what is sent before a subscriber has joined: run short counts until one
    reaches the listener (readiness by polling, not by sleeping)."""
    ioc.ca.configure("count", {"detectors": ["det"], "num": 1})
    for _ in range(50):
        assert ioc.ca.put("Start", 1).ok
        uid = ioc.ca.get("RunUid")  # a stringin: the first 39 characters

        def received(uid: str = uid) -> bool:
            return any(
                n == "stop" and d["run_start"].startswith(uid) for n, d in listener.documents
            )

        try:
            wait_until(received, timeout=2)
            return
        except TimeoutError:
            continue
    raise TimeoutError("the remote listener never received a run")


def assert_received_the_complete_run(ioc, listener: RemoteListener) -> None:  # type: ignore[no-untyped-def]
    ioc.ca.configure("scan", SCAN)
    assert ioc.ca.put("Start", 1).ok
    saved = read_run(ioc.runs()[-1])
    uid = saved[0][1]["uid"]
    wait_until(
        lambda: any(n == "stop" and d["run_start"] == uid for n, d in listener.documents),
        what="the stop document at the remote listener",
    )
    received = listener.run(uid)
    assert [n for n, _ in received] == [n for n, _ in saved]
    assert [d["uid"] for _, d in received] == [d["uid"] for _, d in saved]
    assert [d["data"] for n, d in received if n == "event"] == [
        d["data"] for n, d in saved if n == "event"
    ]


def test_a_remote_dispatcher_gets_every_document_through_the_bluesky_0mq_proxy(make_ioc, listen):
    in_port, out_port = _free_port(), _free_port()
    proxy = subprocess.Popen(
        [
            str(BIN / "bluesky-0MQ-proxy"),
            "--in-address",
            f"127.0.0.1:{in_port}",
            "--out-address",
            f"127.0.0.1:{out_port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ioc = make_ioc("--zmq-publish", f"127.0.0.1:{in_port}")
        listener = listen(f"127.0.0.1:{out_port}")
        subscribed(ioc, listener)
        assert_received_the_complete_run(ioc, listener)
        assert ioc.ca.get_text("Sinks:Status") == f"zmq-publish 127.0.0.1:{in_port}: ok"
    finally:
        proxy.terminate()
        proxy.wait(10)


def test_a_remote_dispatcher_gets_every_document_straight_from_the_ioc(make_ioc, listen):
    port = _free_port()
    ioc = make_ioc("--zmq-serve", f"127.0.0.1:{port}")
    listener = listen(f"127.0.0.1:{port}")
    subscribed(ioc, listener)
    assert_received_the_complete_run(ioc, listener)
    assert ioc.ca.get("Sinks:Dropped") == "0"


@pytest.fixture
def tiled_server(tmp_path: Path) -> Iterator[str]:
    """A real Tiled server on a free loopback port, with a new SQLite catalog."""
    import httpx

    port = _free_port()
    data = tmp_path / "tiled-data"
    data.mkdir()
    log = open(tmp_path / "tiled.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            str(BIN / "tiled"),
            "serve",
            "catalog",
            str(tmp_path / "catalog.db"),
            "--init",
            "--write",
            str(data),  # arrays and files
            "--write",
            f"sqlite:///{tmp_path / 'tables.sqlite'}",  # the event tables TiledWriter appends to
            "--api-key",
            "secret",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    uri = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, (tmp_path / "tiled.log").read_text()
        try:
            return httpx.get(f"{uri}/api/v1/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, timeout=60, what="tiled serve")
        yield uri
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def test_a_run_is_written_to_a_real_tiled_server_data_included(make_ioc, tiled_server, monkeypatch):
    from tiled.client import from_uri

    monkeypatch.setenv("TILED_API_KEY", "secret")
    ioc = make_ioc("--tiled-uri", tiled_server, "--tiled-batch-size", "1")
    wait_until(lambda: ioc.ca.get_text("Sinks:Status").endswith(": ok"), what="tiled sink ok")
    ioc.ca.configure("scan", SCAN)
    assert ioc.ca.put("Start", 1).ok
    saved = ioc.runs()[-1]
    uid = read_run(saved)[0][1]["uid"]
    client = from_uri(tiled_server, api_key="secret")

    def written() -> bool:
        return uid in client and client[uid].metadata.get("stop") is not None

    try:
        wait_until(written, what="the run's stop in Tiled")
        run = client[uid]
        start, stop = run.metadata["start"], run.metadata["stop"]
        primary = run["primary"].read()
    finally:
        client.context.close()
    assert start["scan_id"] == read_run(saved)[0][1]["scan_id"]
    assert stop["exit_status"] == "success"
    table = run_table(saved)
    assert list(primary["motor"].values) == list(table["motor"])
    assert list(primary["det"].values) == pytest.approx(list(table["det"]))
    assert ioc.ca.get("Sinks:Dropped") == "0"


def test_a_tiled_server_that_is_down_shows_in_sinks_status_and_the_plan_still_succeeds(
    make_ioc, monkeypatch
):
    monkeypatch.setenv("TILED_RETRY_ATTEMPTS", "1")  # tiled's client retries for 45 s otherwise
    ioc = make_ioc("--tiled-uri", f"http://127.0.0.1:{_free_port()}")
    ioc.ca.wait_for("Sinks:Status.SEVR", "MAJOR")
    assert "cannot connect" in ioc.ca.get_text("Sinks:Status")
    ioc.ca.configure("scan", SCAN)
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("ExitStatus") == "success"
    ioc.ca.wait_for("Sinks:Dropped", lambda v: int(v) == 10)  # start, descriptor, 7, stop
    assert len(read_run(ioc.runs()[-1])) == 10  # the local files have it all


def test_a_sink_that_raises_does_not_change_the_exit_status_and_shows_in_sinks_status(make_ioc):
    profile = str(Path(__file__).with_name("profile_failing_sink.py"))
    ioc = make_ioc(profile=profile)
    assert ioc.ca.get_alarm("Sinks:Status")[0] == "NO_ALARM"
    ioc.ca.configure("scan", SCAN)
    assert ioc.ca.put("Start", 1).ok
    assert ioc.ca.get("ExitStatus") == "success"
    assert ioc.ca.get_alarm("ExitStatus")[0] == "NO_ALARM"
    ioc.ca.wait_for("Sinks:Dropped", "7")
    status = ioc.ca.get_text("Sinks:Status")
    assert "profile broken_sink" in status and "disk full" in status
    # the stop document went through: no longer failing, but documents were lost
    assert ioc.ca.get_alarm("Sinks:Status")[0] == "MINOR"
    assert ioc.ca.get_alarm("Sinks:Dropped")[0] == "MINOR"
    assert len(read_run(ioc.runs()[-1])) == 10

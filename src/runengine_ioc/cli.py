"""``runengine-ioc``: parse flags, start the worker process, build the IOC, serve.

The profile is loaded in the worker process (``runengine_ioc.host``), never here; only
``runengine-ioc panels``, a one-shot command, loads it in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import sys
from pathlib import Path
from typing import Any

from caproto import _constants as caproto_constants
from caproto.server import template_arg_parser

from .ca.access_options import add_access_arguments, gate_settings
from .ca.autosave import AUTOSAVE_FILE, Autosave
from .ca.fanout import DEFAULT_SEND_TIMEOUT
from .ca.refusal_log import install_refusal_log
from .ca.server import RunEngineIOC, serve
from .data import guarded_sinks as doc_sinks
from .data.disk import DEFAULT_MIN_FREE_MB, disk_state, refuse_unless_room
from .data.files import (
    close_cut_run,
    describe_interrupted,
    find_interrupted_runs,
)
from .data.live_data import DEFAULT_CAPACITY, MAX_CAPACITY
from .engine.bridge import Bridge
from .engine.catalog import RegistryView
from .engine.events import RunOpened
from .engine.profile import DEFAULT_PROFILE, ProfileError, build_setup
from .engine.registry import DEFAULT_MAX_POINTS
from .engine.supervisor import (
    DEFAULT_READY_TIMEOUT,
    DEFAULT_WORKER_TIMEOUT,
    Supervisor,
    default_memory_limit_mb,
)
from .engine.wire import DEFAULT_HALT_TIMEOUT, SinkOptions, WorkerConfig
from .panels.generate import write_all
from .panels.service import ControlRoom
from .queue.plan_queue import open_queue

log = logging.getLogger("runengine_ioc")

DEFAULT_DATA_DIR = "~/runengine-data"
#: caproto batches monitor updates for up to this long; its 10 ms default is most of the
#: latency a client sees for a State change (benchmarks/README.md).
DEFAULT_MONITOR_BATCH_TIME = 0.002
#: Monitor subscriptions x per-point publications per second before Progress & co. slow down
#: (one PyDM main screen holds about 80 subscriptions: 10 Hz still). Measured with camonitor
#: clients on the 12 status PVs during count(1000): at 10 Hz always, 50 clients made the plan
#: 1.58x as long and 100 clients 1.77x; with a budget of 500, 1.24x and 1.58x.
DEFAULT_UPDATE_BUDGET = 1000.0
#: Seconds a thread of the IOC holds the GIL while another waits (Python's default is 5 ms).
#: The event loop publishes in long runs of Python code; the threads that carry a command to
#: the worker and bring its answer back each need the GIL for a moment, and at 5 ms a turn a
#: Stop or a queue's hand-over waited for the loop several times over.
SWITCH_INTERVAL = 0.0005


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (a limit of 0 would refuse every plan)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _capacity(text: str) -> int:
    """An argparse type: the live-data arrays' length, 1..MAX_CAPACITY."""
    value = _positive_int(text)
    if value > MAX_CAPACITY:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_CAPACITY}, got {value}")
    return value


def build_parser(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, Any]:
    parser, split_args = template_arg_parser(
        desc="An EPICS IOC that owns a bluesky RunEngine: choose, start and watch plans "
        "from any Channel Access client.",
        default_prefix="RE:",
        argv=argv,
        supported_async_libs=["asyncio"],
    )
    for action in parser._actions:  # caproto's --prefix has no help text: say its default
        if "--prefix" in action.option_strings:
            action.help = "prefix of every PV this IOC serves (default: %(default)s)"
    parser.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        help="beamline profile: a module name or a .py file defining build_profile() "
        f"(default: {DEFAULT_PROFILE}, simulated devices)",
    )
    parser.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help="directory for the runs' document files, one .jsonl per run "
        f"(default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--min-free-mb",
        type=float,
        default=DEFAULT_MIN_FREE_MB,
        help="refuse to start a plan while the data directory has less free space than this "
        f"(MB), or cannot be written; Disk:Status says so (default: {DEFAULT_MIN_FREE_MB:g})",
    )
    parser.add_argument(
        "--happi-db",
        default=None,
        help="a happi JSON database whose active items are added to the profile's devices",
    )
    parser.add_argument(
        "--max-rate",
        type=float,
        default=10.0,
        help="upper bound (Hz) on per-point PV updates such as Progress (default: 10)",
    )
    parser.add_argument(
        "--update-budget",
        type=float,
        default=DEFAULT_UPDATE_BUDGET,
        help="monitor updates per second the per-point PVs may cost: while clients hold more "
        "subscriptions than this many per --max-rate tick, those PVs are published less often "
        "(down to once a second; State and the other PVs are not affected; 0: never) "
        f"(default: {DEFAULT_UPDATE_BUDGET:g})",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for a plan to end cleanly on SIGINT/SIGTERM (default: 10)",
    )
    parser.add_argument(
        "--halt-timeout",
        type=float,
        default=DEFAULT_HALT_TIMEOUT,
        help="seconds a Halt (or a shutdown) waits for the RunEngine to end the plan; past "
        "that the IOC gives that RunEngine up, closes the run (exit status abort) and goes on "
        f"with a fresh one (default: {DEFAULT_HALT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--worker-timeout",
        type=float,
        default=DEFAULT_WORKER_TIMEOUT,
        help="seconds the worker process (the RunEngine, the profile) may go without answering "
        "before it counts as wedged and is restarted; its run is closed with exit status fail "
        f"(default: {DEFAULT_WORKER_TIMEOUT:g})",
    )
    parser.add_argument(
        "--worker-start-timeout",
        type=float,
        default=DEFAULT_READY_TIMEOUT,
        help="seconds a worker process has to load the profile (at start-up, after a restart, "
        "on Reload); a Reload whose profile takes longer is refused and the worker in service "
        f"stays (default: {DEFAULT_READY_TIMEOUT:g})",
    )
    parser.add_argument(
        "--worker-memory-mb",
        type=float,
        default=default_memory_limit_mb(),
        help="restart the worker process when its resident memory grows past this (MB; 0: no "
        "limit), so a runaway plan costs a restart, not the IOC (default: half the machine's "
        "memory)",
    )
    parser.add_argument(
        "--monitor-batch-time",
        type=float,
        default=DEFAULT_MONITOR_BATCH_TIME,
        help="under a fast stream of monitors, send to each client at most once per this many "
        "seconds (one write for all); a first update after a quiet spell and put completions "
        f"go at once (default: {DEFAULT_MONITOR_BATCH_TIME})",
    )
    parser.add_argument(
        "--client-timeout",
        type=float,
        default=DEFAULT_SEND_TIMEOUT,
        help="disconnect a client that has read nothing for this many seconds (it stalls "
        "only itself meanwhile; its monitors wait, newest value kept) "
        f"(default: {DEFAULT_SEND_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-points",
        type=_positive_int,
        default=DEFAULT_MAX_POINTS,
        help="refuse a plan of more points than this (num, the length of a list of positions, "
        "the product over a grid's axes), at put and at Start, before anything runs; a "
        f"profile's max_points may lower it (default: {DEFAULT_MAX_POINTS})",
    )
    parser.add_argument(
        "--data-capacity",
        type=_capacity,
        default=DEFAULT_CAPACITY,
        help="points kept in the Data:X/Y arrays; a longer run keeps the most recent "
        f"(default: {DEFAULT_CAPACITY}; at most {MAX_CAPACITY}: five arrays of doubles that "
        "every plot client reads whole)",
    )
    parser.add_argument(
        "--panels-dir",
        default=None,
        help="write the PyDM and Phoebus screens, the alarm and archiver files here at "
        "start-up and after each Reload (see also: runengine-ioc panels --help)",
    )
    parser.add_argument(
        "--no-autosave",
        action="store_true",
        help=f"do not save PlanName, PlanArgs, Metadata and the forms' fields to "
        f"<data dir>/{AUTOSAVE_FILE}, nor restore them at start-up",
    )
    parser.add_argument(
        "--queue-autostart",
        action="store_true",
        help="start the plan queue at start-up if it holds items, and whenever items are "
        "added while it is stopped (Queue:Autostart); without it a restarted IOC waits for "
        "Queue:Start",
    )
    add_access_arguments(parser)
    sinks = parser.add_argument_group(
        "document sinks",
        "besides the local files; each runs behind its own queue and thread, so it never "
        "slows or stops a plan (Sinks:Status, Sinks:Dropped say how it goes)",
    )
    sinks.add_argument(
        "--zmq-publish",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="publish every document to a bluesky 0MQ proxy (bluesky-0MQ-proxy's in-address)",
    )
    sinks.add_argument(
        "--zmq-serve",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="serve every document on HOST:PORT for bluesky RemoteDispatchers to connect to "
        "directly (bluesky's 0MQ proxy, run inside the IOC)",
    )
    sinks.add_argument(
        "--tiled-uri",
        help="write every run to this Tiled server with bluesky's TiledWriter (API key from "
        "the TILED_API_KEY environment variable; needs the 'tiled' extra)",
    )
    sinks.add_argument(
        "--tiled-batch-size",
        type=int,
        default=100,
        help="events gathered before each write to Tiled (default: 100; 1 for live)",
    )
    sinks.add_argument(
        "--kafka-topic", help="publish every document to this Kafka topic (the 'kafka' extra)"
    )
    sinks.add_argument(
        "--kafka-bootstrap",
        default="127.0.0.1:9092",
        metavar="SERVERS",
        help="Kafka bootstrap servers, comma-separated (default: 127.0.0.1:9092)",
    )
    sinks.add_argument(
        "--sink-queue-size",
        type=int,
        default=doc_sinks.DEFAULT_QUEUE_SIZE,
        help="documents held for a slow sink before further ones are dropped "
        f"(default: {doc_sinks.DEFAULT_QUEUE_SIZE})",
    )
    return parser, split_args


def worker_config(args: argparse.Namespace, data_dir: Path) -> WorkerConfig:
    """What each worker process gets from the command line."""
    return WorkerConfig(
        profile=args.profile,
        data_dir=str(data_dir),
        happi_db=args.happi_db,
        max_points=args.max_points,
        min_free_mb=args.min_free_mb,
        data_capacity=args.data_capacity,
        halt_timeout=args.halt_timeout,
        max_rate_hz=args.max_rate,
        sinks=SinkOptions(
            zmq_publish=tuple(args.zmq_publish),
            zmq_serve=tuple(args.zmq_serve),
            tiled_uri=args.tiled_uri,
            tiled_batch_size=args.tiled_batch_size,
            kafka_topic=args.kafka_topic,
            kafka_bootstrap=args.kafka_bootstrap,
            queue_size=args.sink_queue_size,
        ),
        log_level=logging.WARNING if args.quiet else logging.INFO,
    )


async def _main(
    args: argparse.Namespace, ioc_options: dict[str, Any], run_options: dict[str, Any]
) -> int:
    data_dir = Path(args.data_dir).expanduser()
    # the IOC's view of the data directory: room for a run (Disk PVs, the pre-flight check)
    # and interrupted runs; the worker process writes the files
    data_dir.mkdir(parents=True, exist_ok=True)
    data_room = functools.partial(disk_state, data_dir, args.min_free_mb)

    def preflight() -> None:
        refuse_unless_room(data_room())

    interrupted = describe_interrupted(find_interrupted_runs(data_dir))
    if interrupted:
        log.warning("%s", interrupted)
    # no plan is accepted (Start, forms, Submit, the queue) while the data directory is full
    bridge = Bridge(
        asyncio.get_running_loop(),
        max_rate_hz=args.max_rate,
        update_budget=args.update_budget,
        preflight=[preflight],
    )

    def close_run(run: RunOpened, reason: str) -> str | None:
        return close_cut_run(data_dir, run.uid, run.scan_id, reason)

    supervisor = Supervisor(
        worker_config(args, data_dir),
        bridge.listener,
        close_cut_run=close_run,
        worker_timeout=args.worker_timeout,
        memory_limit_mb=args.worker_memory_mb,
        ready_timeout=args.worker_start_timeout,
    )
    try:  # the profile is loaded in the worker process, never in this one
        served = await supervisor.start()
    except ProfileError as exc:
        log.error("cannot start: %s", exc)
        return 2
    bridge.attach(supervisor)
    registry = served.registry
    try:  # the plan queue and its history (<data dir>/queue.sqlite)
        queue, queue_note = open_queue(data_dir)
    except Exception as exc:  # sqlite3.Error, OSError: an unreadable database
        log.error("cannot start: the queue database: %s", exc)
        await asyncio.to_thread(supervisor.shutdown, "IOC not starting", args.shutdown_timeout)
        return 2
    try:
        gate = gate_settings(args, data_dir, served)
    except (ValueError, OSError) as exc:
        log.error("cannot start: %s", exc)
        await asyncio.to_thread(supervisor.shutdown, "IOC not starting", args.shutdown_timeout)
        return 2

    ioc_class = RunEngineIOC.with_data_capacity(args.data_capacity)
    ioc = ioc_class(
        registry=registry,
        bridge=bridge,
        reloader=supervisor.load_new,
        description=served.description,
        gate=gate,
        queue=queue,
        **ioc_options,
    )
    log.info(
        "profile %s: plans %s; devices %s; data in %s; worker process %s",
        args.profile,
        ", ".join(registry.plan_names),
        ", ".join(registry.device_names),
        data_dir,
        supervisor.worker_pid,
    )
    ioc.disk.source = data_room
    ioc.queue_pvs.autostart_at_start = args.queue_autostart
    room = ControlRoom(
        ioc,
        None if args.no_autosave else Autosave(data_dir / AUTOSAVE_FILE),
        Path(args.panels_dir).expanduser() if args.panels_dir else None,
    )
    restored = await room.start()
    watchdog = asyncio.ensure_future(supervisor.watch())
    try:
        code = await serve(
            ioc,
            interfaces=run_options["interfaces"],
            log_pv_names=run_options["log_pv_names"],
            shutdown_timeout=args.shutdown_timeout,
            client_timeout=args.client_timeout,
            monitor_batch_time=args.monitor_batch_time,
            startup_note="; ".join(note for note in (interrupted, restored, queue_note) if note),
        )
    finally:
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
    queue.close()
    return code


def panels_main(argv: list[str]) -> int:
    """``runengine-ioc panels``: write the control room's files without serving."""
    parser = argparse.ArgumentParser(
        prog="runengine-ioc panels",
        description="Write the PyDM (.ui) and Phoebus (.bob) screens, the Phoebus alarm "
        "configuration and the Archiver Appliance PV list for an IOC and its profile's plans.",
    )
    parser.add_argument("--prefix", default="RE:", help="the IOC's PV prefix (default: RE:)")
    parser.add_argument("--out", required=True, help="directory to write the files into")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="the beamline profile")
    parser.add_argument("--happi-db", default=None, help="a happi JSON database")
    parser.add_argument("--data-capacity", type=_capacity, default=DEFAULT_CAPACITY)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        setup = build_setup(args.profile, args.happi_db)
    except ProfileError as exc:
        log.error("cannot write the screens: %s", exc)
        return 2
    ioc_class = RunEngineIOC.with_data_capacity(args.data_capacity)
    view = RegistryView.local(setup.registry)
    for path in write_all(Path(args.out).expanduser(), args.prefix, view, ioc_class):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["panels"]:
        return panels_main(given[1:])
    parser, split_args = build_parser(argv)
    args = parser.parse_args(argv)
    ioc_options, run_options = split_args(args)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("caproto").propagate = False  # caproto has its own handler
    sys.setswitchinterval(SWITCH_INTERVAL)
    # each subscription's backlog is bounded by our fan-out (ca/fanout.py), not caproto's
    # max_subscription_backlog: its warning for every long array PV would be noise
    caproto_constants.SUBSCRIPTION_BACKLOG_WARN_THRESHOLD_ELEMENTS = 0
    # a refused put: one line (rate-limited per client), not caproto's traceback (-v: both)
    remove_refusal_log = install_refusal_log()
    if args.verbose:
        logging.getLogger("runengine_ioc.ca.refusal_log").setLevel(logging.DEBUG)
    try:
        return asyncio.run(_main(args, ioc_options, run_options))
    finally:
        remove_refusal_log()


if __name__ == "__main__":
    sys.exit(main())

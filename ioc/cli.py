"""``runengine-ioc``: parse flags, load the profile, build everything, serve."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from caproto.server import template_arg_parser

from .bridge import Bridge
from .profile import DEFAULT_PROFILE, ProfileError, Setup, build_setup
from .server import RunEngineIOC, serve
from .sinks import LocalFilesSink, PersistentScanId, describe_interrupted, find_interrupted_runs
from .worker import RunEngineWorker

log = logging.getLogger("runengine_ioc")

DEFAULT_DATA_DIR = "~/runengine-data"


def build_parser(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, Any]:
    parser, split_args = template_arg_parser(
        desc="An EPICS IOC that owns a bluesky RunEngine: choose, start and watch plans "
        "from any Channel Access client.",
        default_prefix="RE:",
        argv=argv,
        supported_async_libs=["asyncio"],
    )
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
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for a plan to end cleanly on SIGINT/SIGTERM (default: 10)",
    )
    return parser, split_args


async def _main(
    args: argparse.Namespace, ioc_options: dict[str, Any], run_options: dict[str, Any]
) -> int:
    def reloader() -> Setup:
        return build_setup(args.profile, args.happi_db, reload_library=True)

    try:
        setup = build_setup(args.profile, args.happi_db)
    except ProfileError as exc:
        log.error("cannot start: %s", exc)
        return 2
    registry = setup.registry
    data_dir = Path(args.data_dir).expanduser()
    files = LocalFilesSink(data_dir)
    interrupted = describe_interrupted(find_interrupted_runs(data_dir))
    if interrupted:
        log.warning("%s", interrupted)
    bridge = Bridge(asyncio.get_running_loop(), max_rate_hz=args.max_rate)
    worker = RunEngineWorker(
        registry,
        bridge.listener,
        callbacks=[files],
        profile_callbacks=setup.callbacks,
        suspenders=setup.suspenders,
        metadata=setup.metadata,
        scan_id_source=PersistentScanId(data_dir),
    )
    bridge.attach(worker)
    ioc = RunEngineIOC(
        registry=registry,
        bridge=bridge,
        reloader=reloader,
        description=setup.description,
        **ioc_options,
    )
    log.info(
        "profile %s: plans %s; devices %s; data in %s",
        args.profile,
        ", ".join(registry.plan_names),
        ", ".join(registry.device_names),
        data_dir,
    )
    return await serve(
        ioc,
        interfaces=run_options["interfaces"],
        log_pv_names=run_options["log_pv_names"],
        shutdown_timeout=args.shutdown_timeout,
        startup_note=interrupted,
    )


def main(argv: list[str] | None = None) -> int:
    parser, split_args = build_parser(argv)
    args = parser.parse_args(argv)
    ioc_options, run_options = split_args(args)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("caproto").propagate = False  # caproto has its own handler
    return asyncio.run(_main(args, ioc_options, run_options))


if __name__ == "__main__":
    sys.exit(main())

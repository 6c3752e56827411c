"""A bluesky RemoteDispatcher in its own process: prints each document it gets as a JSON line.

Usage: python zmq_listener.py HOST:PORT  (prints {"ready": true} first; ends on stdin EOF)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading

from bluesky.callbacks.zmq import RemoteDispatcher
from event_model import sanitize_doc


def main() -> None:
    dispatcher = RemoteDispatcher(sys.argv[1])

    def emit(name: str, doc: dict) -> None:
        print(json.dumps({"name": name, "doc": sanitize_doc(doc)}), flush=True)

    dispatcher.subscribe(emit)

    def stop_on_eof() -> None:
        sys.stdin.read()
        dispatcher.loop.call_soon_threadsafe(dispatcher.stop)

    threading.Thread(target=stop_on_eof, daemon=True).start()
    print(json.dumps({"ready": True}), flush=True)
    with contextlib.suppress(asyncio.CancelledError):  # stopped on stdin EOF
        dispatcher.start()


if __name__ == "__main__":
    main()

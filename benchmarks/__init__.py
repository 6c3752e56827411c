"""Benchmarks of runengine-ioc: its cost over an in-process RunEngine, and against
bluesky-queueserver. Run with ``python -m benchmarks.run`` (see benchmarks/README.md)."""

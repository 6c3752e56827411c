"""The plan queue and its history: items (items.py), SQLite persistence (store.py), the queue in
memory written to disk first (plan_queue.py), and a runner that submits through the engine's
:class:`~runengine_ioc.engine.commands.Commands` (runner.py). No caproto: ``ca.queue`` serves it."""

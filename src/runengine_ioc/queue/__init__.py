"""The plan queue and its history (to come): items, persistence, a runner that submits
through the engine's commands (:class:`runengine_ioc.engine.commands.WorkerCommands`)."""

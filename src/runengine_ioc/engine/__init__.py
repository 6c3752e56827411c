"""The RunEngine side: worker, bridge, events, registry and signatures.

Nothing in this package imports caproto (an import-linter contract checks it): the worker and
its RunEngine know nothing of Channel Access, and the bridge is the one place where the
worker's threads meet the IOC's event loop. The plan library is not imported from here either:
plans reach the engine through a profile.
"""

"""Access security, plan and device allow-lists, identity, audit and the baton (to come).

Sits above the engine and below the queue and the CA server; imports no caproto, so the rules
can be tested without a server. Writes reach it through the write gate of each PV
(:func:`runengine_ioc.ca.common.guard_writes`).
"""

"""Who may do what: EPICS access security files, the baton, plan and device allow-lists per
user group, the identity a client claims, and the audit log of every write.

Sits above the engine and below the queue and the CA server; imports no caproto (a contract
checks it), so the rules are tested without a server. ``ca.gate`` applies them to every
served channel (``check_access`` and ``auth_write``) and to every plan a client submits.
"""

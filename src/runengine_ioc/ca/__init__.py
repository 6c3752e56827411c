"""The Channel Access face of the IOC: caproto's server, the PV groups and the PV catalogue.

One module per concern (selection, control, status, setup, forms, data, diag), composed flat
under one prefix by :mod:`.server`. The groups reach each other through one typed
:class:`~.context.IOCContext`, and :mod:`.catalogue` lists every served PV for README's table,
the screens, and the archiver and alarm files.
"""

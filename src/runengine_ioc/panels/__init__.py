"""Screens (PyDM, Phoebus), alarm and archiver files, generated from the PV catalogue
(:mod:`runengine_ioc.ca.catalogue`) and the registry (to come)."""

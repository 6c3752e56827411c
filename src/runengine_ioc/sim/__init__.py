"""The simulated beamline: the embedded default profile, a softIoc beamline and its database.

Only ever loaded as a profile (by name) or run as ``runengine-beamline``; no IOC layer imports
it.
"""

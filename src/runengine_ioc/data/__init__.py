"""Where documents go: the local files sink, guarded document sinks, live data for plots.

Document callbacks run on the worker's side; nothing here imports caproto.
"""

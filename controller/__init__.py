"""camfleet controller: ingest, fleet registry, frame store, commands, desired state, scheduler,
retention, HTTP API and metrics. ``camfleet controller run`` starts it (see docs/controller.md).
"""

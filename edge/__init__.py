"""camfleet.edge: the Linux edge agent.

A Raspberry Pi, a MaixCAM or a PC with a USB webcam runs ``camfleet edge run --config edge.toml``
and becomes a fleet member speaking the same v1 contract as the ESP32 nodes: birth and will,
frames (chunked when large), acks, desired/reported config, telemetry, and a disk spool that keeps
every frame until the controller's receipt covers it.

Python API (for demos): ``EdgeAgent(load_config(path)).run(stop_event)``.
"""

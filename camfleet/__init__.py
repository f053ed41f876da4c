"""camfleet: a camera fleet over MQTT.

Sub-packages, one per part of the system (the folder layout is the architecture):
camfleet.proto (wire contract), camfleet.controller, camfleet.edge, camfleet.esp32_node.
"""

__version__ = "0.1.0"

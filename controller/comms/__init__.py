"""Channels between the controller and the outside: one module per channel (MQTT here)."""

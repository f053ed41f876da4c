"""Firmware over the air: artifacts (signed images in a content-addressed store), block delivery
over MQTT, and staged rollouts. docs/controller.md "Firmware rollouts" describes the behaviour."""

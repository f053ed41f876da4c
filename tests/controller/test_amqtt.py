"""The controller on a broker without MQTT 5 (amqtt, 3.1.1 only): it falls back to 3.1.1 and
ingests, receipts and commands as on mosquitto."""

from __future__ import annotations

from pathlib import Path

from camfleet.embedded_broker import EmbeddedBroker
from camfleet.testing.controller_process import start_controller
from camfleet.testing.sim_device import SimDevice, unique_id


def test_controller_falls_back_to_mqtt311(amqtt_broker: EmbeddedBroker, tmp_path: Path) -> None:
    ctl = start_controller(amqtt_broker.url, tmp_path / "data")
    dev = SimDevice(amqtt_broker.host, amqtt_broker.port, unique_id("amq")).connect()
    try:
        assert ctl.channel.protocol == "3.1.1"
        dev.send_frames(10, size=4000)
        assert dev.wait_receipted(timeout=20)
        cmd = ctl.commands.create("reannounce", {}, device_id=dev.device_id)[0]
        assert dev.wait_until(lambda: any(c.command.id == cmd["id"] for c in dev.commands), 60)
        assert ctl.metrics.total("frames_stored_total") == 10
    finally:
        dev.disconnect()
        ctl.stop()

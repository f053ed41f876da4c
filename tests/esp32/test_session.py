"""A node skips SUBSCRIBE while the broker keeps its session, and subscribes again when it does not.

Re-subscribing on every wake with a persistent session costs a round trip of radio time per wake
and grew mosquitto 2.0.11's heap by ~42 bytes per topic per wake (issue 15). The broker's own log
(``log_type subscribe``) is the witness of what it received.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from camfleet.esp32_node.tools.hostdevice import HostDevice
from camfleet.mosquitto import Mosquitto
from camfleet.proto.v1 import command_pb2


@pytest.fixture
def logged_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto", extra_config="log_type subscribe")
    broker.start()
    yield broker
    broker.kill()


def _count(lines: list[str], text: str) -> int:
    return sum(1 for line in lines if line.endswith(text))


def _subscribes(broker: Mosquitto, dev: HostDevice) -> int:
    """SUBSCRIBEs of the node's cmd topic the broker has logged so far."""
    return _count(list(broker.log), f" {dev.device_id} 1 camfleet/v1/{dev.device_id}/cmd")


def _wake(broker: Mosquitto, dev: HostDevice) -> int:
    """Run one wake; return how many SUBSCRIBEs the node sent in it (0 or 1)."""
    gone = f"Client {dev.device_id} disconnected."
    disconnects, before = _count(list(broker.log), gone), _subscribes(broker, dev)
    woke = dev.run_wake()
    assert woke.ended == "deepsleep", woke.output
    # The disconnect is logged after everything the node sent in that wake: a barrier.
    assert broker.wait_log(lambda lines: _count(lines, gone) > disconnects)
    return _subscribes(broker, dev) - before


def test_node_subscribes_only_when_the_session_is_gone_or_its_topics_changed(
    logged_broker, make_device, receiver_for
):
    broker = logged_broker
    dev = make_device(broker)
    rx = receiver_for(broker, dev)

    assert _wake(broker, dev) == 1  # first wake: no session yet
    assert _wake(broker, dev) == 0  # session present, same topics: no SUBSCRIBE
    # ... and the session's subscriptions still deliver what waited while it slept.
    rx.send_command(command_pb2.Command(id="while-asleep-1", reannounce={}))
    assert _wake(broker, dev) == 0
    assert rx.wait_ack("while-asleep-1").status == command_pb2.ACK_STATUS_DONE

    # The broker lost its persistence: no session, so the node subscribes again.
    broker.kill()
    (broker.workdir / "data" / "mosquitto.db").unlink(missing_ok=True)
    broker.start()
    rx.close()
    rx = receiver_for(broker, dev)
    assert _wake(broker, dev) == 1
    rx.send_command(command_pb2.Command(id="while-asleep-2", reannounce={}))
    assert _wake(broker, dev) == 0
    assert rx.wait_ack("while-asleep-2").status == command_pb2.ACK_STATUS_DONE

    # A power cut loses RTC memory (what was subscribed): subscribe again to be sure.
    dev.power_cycle()
    assert _wake(broker, dev) == 1
    # New groups in NVS: the session is present but lacks the group's topic.
    dev.write_nvs({"groups": "garden"})
    assert _wake(broker, dev) == 1
    assert _count(list(broker.log), f" {dev.device_id} 1 camfleet/v1/_group/garden/cmd") == 1

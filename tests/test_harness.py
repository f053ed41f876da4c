"""The broker harness itself: persistence across restart, loss on kill -9, no silent drops."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as mqtt

from camfleet.mosquitto import Mosquitto
from tests.proto.mqtt_helpers import Subscriber, publish


def persistent_session(
    broker: Mosquitto, client_id: str
) -> tuple[mqtt.Client, list[bytes], threading.Event]:
    """Connect a clean_session=False client subscribed at QoS 1; return it, its inbox and a flag
    set when the inbox changes."""
    inbox: list[bytes] = []
    changed = threading.Event()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=False,
        protocol=mqtt.MQTTv311,
    )

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        inbox.append(bytes(m.payload))
        changed.set()

    subscribed = threading.Event()
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(broker.host, broker.port)
    client.subscribe(f"harness/{client_id}", qos=1)
    client.loop_start()
    assert subscribed.wait(60)
    return client, inbox, changed


def wait_for(inbox: list[bytes], changed: threading.Event, n: int, timeout: float = 20) -> None:
    while len(inbox) < n:
        changed.clear()
        if len(inbox) >= n:
            break
        assert changed.wait(timeout), f"only {len(inbox)} of {n} messages arrived"


def test_queued_messages_of_a_sleeping_client_survive_a_clean_broker_restart(
    mosquitto: Mosquitto,
) -> None:
    cid = f"sleeper-{uuid.uuid4().hex[:6]}"
    client, _, _ = persistent_session(mosquitto, cid)
    client.disconnect()
    client.loop_stop()
    publish(mosquitto.host, mosquitto.port, [(f"harness/{cid}", b"while asleep", False)])
    mosquitto.restart()  # SIGTERM: mosquitto saves its persistence file
    client, inbox, changed = persistent_session(mosquitto, cid)
    try:
        wait_for(inbox, changed, 1)
    finally:
        client.disconnect()
        client.loop_stop()
    assert inbox == [b"while asleep"]


def test_kill_9_loses_what_was_not_autosaved(mosquitto: Mosquitto) -> None:
    topic = f"harness/retained-{uuid.uuid4().hex[:6]}"
    publish(mosquitto.host, mosquitto.port, [(topic, b"kept only in memory", True)])
    mosquitto.kill()
    assert not mosquitto.running
    mosquitto.start()
    # A marker published after the restart arrives after any retained message would have.
    sub = Subscriber(mosquitto.host, mosquitto.port, [topic, topic + "/marker"])
    try:
        publish(mosquitto.host, mosquitto.port, [(topic + "/marker", b"m", False)])
        first = sub.get()
    finally:
        sub.close()
    assert first.topic == topic + "/marker"  # the retained message died with the broker


def test_more_than_mosquittos_default_queue_reaches_an_offline_persistent_client(
    mosquitto: Mosquitto,
) -> None:
    # mosquitto's default max_queued_messages (1000) would silently drop the rest at QoS 1.
    cid = f"backlog-{uuid.uuid4().hex[:6]}"
    client, _, _ = persistent_session(mosquitto, cid)
    client.disconnect()
    client.loop_stop()
    n = 2500
    publish(
        mosquitto.host, mosquitto.port, [(f"harness/{cid}", b"%d" % i, False) for i in range(n)]
    )
    client, inbox, changed = persistent_session(mosquitto, cid)
    try:
        wait_for(inbox, changed, n)
    finally:
        client.disconnect()
        client.loop_stop()
    assert inbox == [b"%d" % i for i in range(n)]


def test_a_second_start_while_running_is_refused(mosquitto: Mosquitto) -> None:
    import pytest

    with pytest.raises(RuntimeError, match="already running"):
        mosquitto.start()

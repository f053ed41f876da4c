"""Spool and receipts: a frame leaves flash only when the controller's receipt covers it."""

from __future__ import annotations

import hashlib
import random
import subprocess

from camfleet.esp32_node.tools.hostdevice import MICROPYTHON
from camfleet.proto import topics
from camfleet.proto.v1 import config_pb2
from tests.esp32.conftest import jpeg, node_config


def test_broker_down_at_wake_spools_then_delivers_once(mosquitto, make_device, receiver_for):
    dev = make_device(mosquitto)
    mosquitto.stop()

    woke = dev.run_wake()

    assert woke.ended == "deepsleep", woke.output
    assert "broker unreachable" in woke.output
    assert dev.spool_files() == ["0000000001-0000000001.f"]

    mosquitto.start()
    rx = receiver_for(mosquitto, dev)
    woke = dev.run_wake()

    assert woke.ended == "deepsleep", woke.output
    replayed = rx.frames[(1, 1)]
    assert replayed.historical
    assert replayed.sha256 == hashlib.sha256(replayed.data).digest()
    assert not rx.frames[(2, 1)].historical
    assert rx.duplicates == 0
    assert dev.spool_files() == []  # both receipted, both removed
    assert not rx.errors and rx.noncanonical == []  # a replay too is the generated encoding


def test_broker_killed_after_puback_frame_is_replayed_and_stored_once(
    mosquitto, make_device, receiver_for
):
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    rx.close()  # the controller is away: the broker only queues the frame for it

    woke = dev.run_wake()
    assert woke.ended == "deepsleep"
    assert dev.spool_files() == ["0000000001-0000000001.f"]  # PUBACK is no receipt

    mosquitto.kill()  # -9: the queued frame was never saved (autosave is 60 s)
    mosquitto.start()
    rx = receiver_for(mosquitto, dev)
    assert (1, 1) not in rx.frames  # really lost by the broker

    woke = dev.run_wake()
    assert woke.ended == "deepsleep", woke.output
    assert rx.frames[(1, 1)].historical
    assert (2, 1) in rx.frames
    assert rx.duplicates == 0
    assert dev.spool_files() == []

    # a third wake has nothing left to replay
    dev.run_wake()
    assert sorted(rx.frames) == [(1, 1), (2, 1), (3, 1)]
    assert rx.duplicates == 0


def test_spool_full_drops_oldest_with_an_event(mosquitto, make_device, receiver_for):
    dev = make_device(mosquitto, config=node_config(spool_max_frames=2))
    mosquitto.stop()
    for _ in range(3):
        assert dev.run_wake().ended == "deepsleep"
    assert dev.spool_files() == ["0000000002-0000000001.f", "0000000003-0000000001.f"]

    mosquitto.start()
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()

    dropped = [e for e in rx.of("event") if e.type == "spool_dropped"]
    assert len(dropped) == 1
    assert dropped[0].attributes["session"] == "1" and dropped[0].attributes["seq"] == "1"
    assert sorted(rx.frames) == [(2, 1), (3, 1), (4, 1)]
    assert dev.spool_files() == []


def test_large_frame_travels_in_chunks_without_two_copies_in_ram(
    mosquitto, make_device, receiver_for
):
    # 384,000 bytes is the esp32-camera JPEG buffer for UXGA; at the 640K heap two copies of such
    # a frame (plus the interpreter) cannot fit, so a concatenation would raise MemoryError.
    big = jpeg(1600, 1200, seed=5, quality=90, noise=True)[:380_000]
    cfg = config_pb2.DeviceConfig()
    cfg.camera.width, cfg.camera.height = 1600, 1200
    cfg.max_payload = 64 * 1024
    cfg.sleep.awake_window_s = 2
    dev = make_device(mosquitto, config=cfg.SerializeToString(), jpegs={"1600x1200": [big]})
    assert dev.heap_size == "640K"  # HEAP_SIZE, the limit every node test runs under
    rx = receiver_for(mosquitto, dev)

    woke = dev.run_wake()

    assert woke.ended == "deepsleep", woke.output
    chunks = rx.of("chunk")
    assert chunks, woke.output
    assert len(chunks) == chunks[0].count > 1
    assert all(len(c.SerializeToString()) <= 64 * 1024 for c in chunks)
    frame = rx.frames[(1, 1)]
    assert frame.data == big and frame.sha256 == hashlib.sha256(big).digest()
    assert rx.noncanonical == []  # the streamed chunks equal the generated encoding
    assert dev.spool_files() == []
    # the control: under the same heap limit, a second copy of that frame does not fit
    probe = subprocess.run(
        [
            MICROPYTHON,
            "-X",
            "heapsize=640K",
            "-c",
            "import os\na = os.urandom(380000)\nb = a + b'x'",
        ],
        capture_output=True,
        text=True,
    )
    assert "MemoryError" in probe.stdout + probe.stderr


def test_camera_init_failure_is_reported_and_the_node_sleeps(mosquitto, make_device, receiver_for):
    dev = make_device(mosquitto)
    rx = receiver_for(mosquitto, dev)
    dev.set_fault("camera_init", 2)  # the first start and the restart both fail

    woke = dev.run_wake()

    assert woke.ended == "deepsleep"
    assert [e.type for e in rx.of("event")].count("camera_error") == 2
    assert rx.of("telemetry")[-1].camera_status.startswith("init_failed")
    # and on the serial console, where a first flash without a broker looks (docs/esp32-node.md)
    assert "camera_error: init_failed: Camera Init Failed (attempt 1 of 2" in woke.output
    assert rx.frames == {}
    dev.run_wake()
    assert (2, 1) in rx.frames  # the next wake captures again


def test_damaged_flash_never_bricks_the_node(mosquitto, make_device, receiver_for):
    dev = make_device(mosquitto)
    mosquitto.stop()
    dev.run_wake()
    dev.run_wake()
    first, _second = dev.spool_files()
    spool = dev.dir / "fs" / "spool"
    (spool / first).write_bytes((spool / first).read_bytes()[:-100])  # torn by a bad sector
    dev.write_nvs({"cfg": b"\xff\xff\xff"})  # an undecodable stored config
    mosquitto.start()
    rx = receiver_for(mosquitto, dev)

    woke = dev.run_wake()

    assert woke.ended == "deepsleep", woke.output
    events = {e.type: e for e in rx.of("event")}
    assert "unreadable" in events["spool_dropped"].message
    assert "defaults" in events["config_rejected"].message
    assert sorted(rx.frames) == [(2, 1), (3, 1)]  # the good spooled frame and this wake's
    assert dev.spool_files() == []


def test_garbage_on_every_subscribed_topic_never_crashes_the_node(
    mosquitto, make_device, receiver_for
):
    # No key: the garbage reaches the decoders (a node with a key refuses it unread, see
    # test_signed.py).
    dev = make_device(mosquitto, hmac_key=b"")
    rx = receiver_for(mosquitto, dev)
    dev.run_wake()
    rnd = random.Random(3)
    for kind in (topics.Kind.CMD, topics.Kind.DESIRED, topics.Kind.RECEIPT, topics.Kind.OTA_BLOCK):
        for n in (0, 1, 5, 64, 700):
            payload = rnd.randbytes(n)
            rx.client.publish(rx.topic(kind), payload, qos=1).wait_for_publish(5)

    # and one command far larger than the node's heap: skipped and acked, not redelivered forever
    rx.client.publish(rx.topic(topics.Kind.CMD), b"\x0a" * 2_000_000, qos=1).wait_for_publish(5)

    woke = dev.run_wake()

    assert woke.ended == "deepsleep", woke.output
    assert "Traceback" not in woke.output
    assert any("oversized" in e.message for e in rx.of("event"))
    assert (2, 1) in rx.frames  # the wake did its work
    assert not rx.errors  # and everything it sent was well formed
    dev.run_wake()
    oversized = [e for e in rx.of("event") if "oversized" in e.message]
    assert len(oversized) == 1  # it was acked, so the broker did not deliver it again

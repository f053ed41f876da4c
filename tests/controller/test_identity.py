"""Frame identity survives re-provisioning; same identity + other digest is a kept conflict;
the registry's presence cannot be poisoned by one message; the controller's own presence is
re-asserted; small API edges refuse bad input (issue 9, defects 1, 5, 7)."""

from __future__ import annotations

import os
import socket
import threading

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.proto import codec, topics
from camfleet.proto.v1 import state_pb2
from camfleet.testing.controller_process import Waiter, frame_rows
from camfleet.testing.sim_device import SimDevice, fake_jpeg, unique_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_wiped_device_and_an_identity_reuse_lose_nothing(controllers, mosquitto, tmp_path):  # type: ignore[no-untyped-def]
    ctl = controllers()
    waiter = Waiter(ctl)
    device_id = unique_id("reprov")
    first = SimDevice(mosquitto.host, mosquitto.port, device_id, incarnation=os.urandom(8))
    first.connect()
    old = first.send_frames(3)
    assert first.wait_receipted(timeout=20)
    first.disconnect()

    # State wiped: a new incarnation, session numbering starts again, same client id (the
    # broker session may still hold receipts for the old frames).
    again = SimDevice(mosquitto.host, mosquitto.port, device_id, incarnation=os.urandom(8))
    again.connect()
    new = again.send_frames(3)
    assert [(f.session, f.seq) for f in new] == [(f.session, f.seq) for f in old]
    assert again.wait_receipted(timeout=20)
    rows = frame_rows(tmp_path / "data", device_id)
    assert sorted(r["sha256"] for r in rows) == sorted(f.sha256.hex() for f in old + new)
    assert not any(r["conflict"] for r in rows)
    assert ctl.metrics.total("frames_duplicate_total") == 0

    # The same incarnation re-used (a restored backup) with other images: conflicts, kept.
    again.next_seq = 1
    reused = [again.make_frame(data=fake_jpeg(2048, seed=1000 + i)) for i in range(3)]
    for f in reused:
        again.publish_frame(f)
    assert waiter.wait_for(lambda: ctl.metrics.total("frames_conflict_total") == 3, 20)
    rows = frame_rows(tmp_path / "data", device_id)
    assert len(rows) == 9
    conflicts = {r["sha256"] for r in rows if r["conflict"]}
    assert conflicts == {f.sha256.hex() for f in reused}
    for f in reused:  # each with its own file, bytes intact
        row = next(r for r in rows if r["sha256"] == f.sha256.hex())
        assert ctl.store.get(row["store_key"]) == f.data
    assert len({r["store_key"] for r in rows}) == 9

    # A real redelivery (same identity, same digest) stays a duplicate, receipted again.
    before = ctl.metrics.total("frames_duplicate_total")
    again.publish_frame(reused[0])
    assert waiter.wait_for(lambda: ctl.metrics.total("frames_duplicate_total") == before + 1, 20)
    assert len(frame_rows(tmp_path / "data", device_id)) == 9


def test_chunked_frames_of_two_incarnations_do_not_mix(controllers, mosquitto, tmp_path):  # type: ignore[no-untyped-def]
    ctl = controllers()
    waiter = Waiter(ctl)
    device_id = unique_id("chunkinc")
    a = SimDevice(mosquitto.host, mosquitto.port, device_id, incarnation=b"A" * 8).connect()
    b = SimDevice(mosquitto.host, mosquitto.port, device_id, incarnation=b"B" * 8, session=1)
    fa, fb = a.make_frame(size=60_000), b.make_frame(size=60_000)
    assert (fa.session, fa.seq) == (fb.session, fb.seq)
    for x, y in zip(a.chunks_of(fa, 8192), b.chunks_of(fb, 8192), strict=True):
        a.publish_chunks([x, y])  # interleaved on one connection
    assert a.wait_receipted(timeout=20)
    assert waiter.wait_for(lambda: len(frame_rows(tmp_path / "data", device_id)) == 2, 20)
    rows = frame_rows(tmp_path / "data", device_id)
    assert sorted(r["sha256"] for r in rows) == sorted([fa.sha256.hex(), fb.sha256.hex()])
    assert not any(r["conflict"] for r in rows)


def _state(device_id: str, session: int, presence: int, incarnation: bytes) -> bytes:
    return codec.encode(
        state_pb2.DeviceState(presence=presence, session=session, incarnation=incarnation)  # type: ignore[arg-type]
    )


def _device(ctl, device_id):  # type: ignore[no-untyped-def]
    with ctl.db.read() as tx:
        return tx.one("SELECT presence, session FROM devices WHERE device_id = ?", (device_id,))


def test_a_forged_session_does_not_keep_a_device_offline(controllers, devices, mosquitto):  # type: ignore[no-untyped-def]
    ctl = controllers()
    waiter = Waiter(ctl)
    dev = devices("poison", incarnation=os.urandom(8))
    assert waiter.wait_for(lambda: (_device(ctl, dev.device_id) or {}).get("presence") == "online")
    forger = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    forger.connect(mosquitto.host, mosquitto.port)
    forger.loop_start()
    state_topic = topics.device_topic(dev.device_id, topics.Kind.STATE)
    forger.publish(
        state_topic, _state(dev.device_id, 2**32 - 1, 2, dev.incarnation), qos=1, retain=True
    ).wait_for_publish(5)
    assert waiter.wait_for(lambda: _device(ctl, dev.device_id)["presence"] == "offline")
    # The device's live frames prove it runs its real session: online again.
    dev.send_frames(1)
    assert dev.wait_receipted(timeout=20)
    assert waiter.wait_for(lambda: _device(ctl, dev.device_id)["presence"] == "online")
    assert _device(ctl, dev.device_id)["session"] == dev.session
    # ...and its next real birth is not stale.
    dev.disconnect()
    stale_before = ctl.metrics.get("states_total", outcome="stale")
    dev.connect()
    assert waiter.wait_for(lambda: _device(ctl, dev.device_id)["session"] == dev.session)
    assert ctl.metrics.get("states_total", outcome="stale") == stale_before
    # A will of ANOTHER incarnation (a late will from before a wipe) changes nothing.
    forger.publish(
        state_topic, _state(dev.device_id, dev.session + 5, 2, b"old-inc!"), qos=1
    ).wait_for_publish(5)
    assert waiter.wait_for(
        lambda: ctl.metrics.get("states_total", outcome="stale") == stale_before + 1
    )
    assert _device(ctl, dev.device_id)["presence"] == "online"
    forger.loop_stop()
    forger.disconnect()


def test_the_controller_reasserts_a_forged_offline_presence(controllers, mosquitto):  # type: ignore[no-untyped-def]
    ctl = controllers()
    seen: list[state_pb2.ControllerState] = []
    cond = threading.Condition()

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        if msg.payload:
            with cond:
                seen.append(codec.decode_as(state_pb2.ControllerState, msg.payload).message)
                cond.notify_all()

    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    watcher.on_message = on_message
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.subscribe(topics.controller_state_topic(), 1)
    watcher.loop_start()
    forged = state_pb2.ControllerState(presence=state_pb2.PRESENCE_OFFLINE, instance_id="x")
    watcher.publish(
        topics.controller_state_topic(), codec.encode(forged), qos=1, retain=True
    ).wait_for_publish(5)
    with cond:
        assert cond.wait_for(
            lambda: (
                bool(seen)
                and seen[-1].presence == state_pb2.PRESENCE_ONLINE
                and seen[-1].instance_id == ctl.instance_id
                and any(s.instance_id == "x" for s in seen)
            ),
            15,
        )
    assert ctl.metrics.total("controller_presence_reasserted_total") >= 1
    watcher.loop_stop()
    watcher.disconnect()


def test_api_refuses_bad_expiry_and_huge_frame_ids(controllers, devices):  # type: ignore[no-untyped-def]
    port = _free_port()
    ctl = controllers(http=f"127.0.0.1:{port}", token="t0k")
    dev = devices("apiedge")
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    auth = {"Authorization": "Bearer t0k"}
    for bad in (-5, 0, 1e300):
        body = {"action": "reboot", "device": dev.device_id, "expires_in_s": bad}
        r = http.post("/api/v1/commands", json=body, headers=auth)
        assert r.status_code == 422, (bad, r.text)
    with ctl.db.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM commands") == 0
    ok = http.post(
        "/api/v1/commands",
        json={"action": "reboot", "device": dev.device_id, "expires_in_s": 60},
        headers=auth,
    )
    assert ok.status_code == 201
    for frame_id in ("99999999999999999999999-1", "1-99999999999999999999999", "4294967296-1"):
        for suffix in ("", "/image"):
            r = http.get(f"/api/v1/frames/{dev.device_id}/{frame_id}{suffix}")
            assert r.status_code == 404, (frame_id, r.status_code)


def test_the_controller_says_where_its_token_is_not_what_it_is(mosquitto, tmp_path):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    data = tmp_path / "data"
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "camfleet", "controller", "run", "--broker", mosquitto.url,
         "--data", str(data), "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "ingesting from" in line:
                break
    finally:
        proc.terminate()
        proc.wait(60)
    token = (data / "api-token").read_text().strip()
    out = "".join(lines)
    assert token and token not in out
    assert f"{data}/api-token" in out


def test_frames_of_old_registry_rows_keep_working(controllers, devices, tmp_path):  # type: ignore[no-untyped-def]
    # Devices without an incarnation (older firmware) keep deduplicating as before.
    ctl = controllers()
    waiter = Waiter(ctl)
    dev = devices("legacy")
    frames = dev.send_frames(2)
    assert dev.wait_receipted(timeout=20)
    dev.publish_frame(frames[0])
    assert waiter.wait_for(lambda: ctl.metrics.total("frames_duplicate_total") == 1, 20)
    assert {r["incarnation"] for r in frame_rows(tmp_path / "data", dev.device_id)} == {""}


def test_retention_deletes_exactly_the_frames_it_chose(controllers, mosquitto, tmp_path):  # type: ignore[no-untyped-def]
    from camfleet.controller.config import RetentionPolicy

    ctl = controllers(retention_default=RetentionPolicy(max_count=4), retention_interval_s=3600)
    device_id = unique_id("retain")
    old = SimDevice(mosquitto.host, mosquitto.port, device_id, incarnation=b"old-inc!")
    new = SimDevice(mosquitto.host, mosquitto.port, device_id, incarnation=b"new-inc!")
    new.frame_size = 3000  # other images
    old.connect()
    first = old.send_frames(3, captured_at_ms=1_700_000_000_000)
    assert old.wait_receipted(timeout=20)
    old.disconnect()
    new.connect()
    second = new.send_frames(3, captured_at_ms=1_700_000_100_000)
    assert new.wait_receipted(timeout=20)
    # Same (session, seq) in both incarnations; the two oldest frames of the six must go.
    assert ctl.retention.run() == {"count": 2}
    rows = frame_rows(tmp_path / "data", device_id)
    kept = sorted(r["sha256"] for r in rows)
    assert len(rows) == 4
    assert first[0].sha256.hex() not in kept and second[0].sha256.hex() in kept
    for r in rows:
        assert ctl.store.get(r["store_key"])

"""Commands, desired config and bad input over a real broker: every command is acked with a
reason, malformed payloads never crash the agent, and good data keeps flowing."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from camfleet.proto import codec
from camfleet.proto.topics import Kind, group_cmd_topic
from camfleet.proto.v1 import command_pb2, common_pb2, config_pb2, frame_pb2, state_pb2
from tests.edge.conftest import agent_config

A = command_pb2


@pytest.fixture
def setup(shared_mosquitto, tmp_path, device_id, run_agent, receiver_for):
    rx = receiver_for(shared_mosquitto, device_id)
    running = run_agent(agent_config(tmp_path, shared_mosquitto, device_id, agent={"max_burst": 5}))
    rx.wait_for(
        lambda g: any(s.presence == state_pb2.PRESENCE_ONLINE for s in g.states), what="birth"
    )
    return rx, running.agent


def capture_ok(rx, command_id: str) -> frame_pb2.Frame:
    rx.command(command_id, capture=A.CaptureNow())
    ack = rx.wait_ack(command_id)
    assert ack.status == A.ACK_STATUS_DONE, ack.detail
    key = ack.capture_ids[0]
    rx.wait_for(lambda g: any(f.capture_id == key for f in g.frames.values()), what=key)
    return next(f for f in rx.got.frames.values() if f.capture_id == key)


@pytest.mark.parametrize(
    ("action", "status", "detail"),
    [
        (
            {"capture": A.CaptureNow(overrides=common_pb2.CameraSettings(jpeg_quality=0))},
            A.ACK_STATUS_REJECTED,
            "jpeg_quality=0 is outside 1..100",
        ),
        (
            {"capture": A.CaptureNow(overrides=common_pb2.CameraSettings(width=320))},
            A.ACK_STATUS_REJECTED,
            "width and height must be given together",
        ),
        (
            {"capture": A.CaptureNow(overrides=common_pb2.CameraSettings(rotation=45))},
            A.ACK_STATUS_REJECTED,
            "rotation=45",
        ),
        (
            {"capture": A.CaptureNow(overrides=common_pb2.CameraSettings(width=9000, height=9000))},
            A.ACK_STATUS_REJECTED,
            "largest is 4096x4096",
        ),
        ({"capture": A.CaptureNow(count=6)}, A.ACK_STATUS_REJECTED, "exceeds max_burst 5"),
        ({"reboot": A.Reboot()}, A.ACK_STATUS_REJECTED, "machine reboot is disabled"),
        ({"ota_offer": A.OtaOffer(artifact_id="x")}, A.ACK_STATUS_REJECTED, "self-update is off"),
        (
            {
                "set_config": A.SetConfig(
                    config=config_pb2.DeviceConfig(camera=common_pb2.CameraSettings(brightness=150))
                )
            },
            A.ACK_STATUS_REJECTED,
            "brightness=150",
        ),
        (
            {
                "set_config": A.SetConfig(
                    config=config_pb2.DeviceConfig(
                        schedule=config_pb2.CaptureSchedule(cron="61 * * * *")
                    )
                )
            },
            A.ACK_STATUS_REJECTED,
            "cron",
        ),
        ({"stay_awake": A.StayAwake(seconds=60)}, A.ACK_STATUS_DONE, "always awake"),
    ],
)
def test_command_acked_with_reason(setup, action, status, detail):
    rx, agent = setup
    rx.command("cmd-1", **action)
    ack = rx.wait_ack("cmd-1")
    assert ack.status == status and detail in ack.detail, ack
    assert agent.spool.depth == 0 and not rx.got.frames  # nothing captured by a refusal
    capture_ok(rx, "after")  # the agent still works


def test_malformed_and_expired_commands(setup):
    rx, agent = setup
    rx.send(Kind.CMD, b"\xff\xff\xff not protobuf")
    rx.wait_for(lambda g: any(e.type == "command_rejected" for e in g.events), what="event")
    event = next(e for e in rx.got.events if e.type == "command_rejected")
    assert "bad_protobuf" in event.message
    rx.send(Kind.CMD, A.Command(id="no-action"))
    ack = rx.wait_ack("no-action")
    assert ack.status == A.ACK_STATUS_REJECTED and "no action" in ack.detail
    rx.send(
        Kind.CMD,
        A.Command(id="old", expires_at_ms=int(time.time() * 1000) - 1000, capture=A.CaptureNow()),
    )
    ack = rx.wait_ack("old")
    assert ack.status == A.ACK_STATUS_EXPIRED
    # Garbage on the receipt and desired topics is ignored; good data keeps flowing.
    rx.send(Kind.RECEIPT, b"\x0a\x03abc")
    rx.send(Kind.DESIRED, b"\x08")
    frame = capture_ok(rx, "good")
    assert frame.seq == 1 and not rx.got.errors
    assert agent.wait_until(lambda: agent.counters["bad_messages"] >= 2, 30)


def test_burst_and_redelivered_command(setup):
    rx, _agent = setup
    cmd = rx.command("burst", capture=A.CaptureNow(count=3, interval_ms=10, metadata={"k": "v"}))
    accepted = rx.wait_ack("burst", final=False)
    assert accepted.status in (A.ACK_STATUS_ACCEPTED, A.ACK_STATUS_DONE)
    ack = rx.wait_ack("burst")
    assert ack.status == A.ACK_STATUS_DONE and len(ack.capture_ids) == 3
    rx.wait_for(lambda g: len(g.frames) == 3, what="3 burst frames")
    assert [f.seq for f in rx.got.frames.values()] == [1, 2, 3]
    assert all(f.metadata["k"] == "v" and f.command_id == "burst" for f in rx.got.frames.values())
    rx.send(Kind.CMD, cmd)  # the same command id again (QoS 1 redelivery): acked, not re-run
    rx.wait_for(
        lambda g: (
            sum(a.command_id == "burst" and a.status == A.ACK_STATUS_DONE for a in g.acks) == 2
        ),
        what="second ack",
    )
    capture_ok(rx, "next")
    assert len(rx.got.frames) == 4


def test_desired_config_applied_reported_and_refused(setup):
    rx, agent = setup
    desired = config_pb2.Desired(
        version=1,
        config=config_pb2.DeviceConfig(
            camera=common_pb2.CameraSettings(jpeg_quality=40, width=320, height=240)
        ),
    )
    rx.send(Kind.DESIRED, desired, retain=True)
    rx.wait_for(lambda g: any(r.version == 1 for r in g.reported), what="reported v1")
    rep = [r for r in rx.got.reported if r.version == 1][-1]
    assert not rep.error and rep.config.camera.jpeg_quality == 40
    frame = capture_ok(rx, "c1")
    assert frame.settings.jpeg_quality == 40 and (frame.width, frame.height) == (320, 240)

    bad = config_pb2.Desired(
        version=2, config=config_pb2.DeviceConfig(camera=common_pb2.CameraSettings(rotation=45))
    )
    rx.send(Kind.DESIRED, bad, retain=True)
    rx.wait_for(lambda g: any(r.version == 2 for r in g.reported), what="reported v2")
    rep = [r for r in rx.got.reported if r.version == 2][-1]
    assert "rotation=45" in rep.error and rep.config.camera.jpeg_quality == 40
    rx.wait_for(lambda g: any(e.type == "config_rejected" for e in g.events), what="event")
    assert agent.desired.version == 1  # the old version still runs

    rx.command(
        "set",
        set_config=A.SetConfig(
            config=config_pb2.DeviceConfig(camera=common_pb2.CameraSettings(jpeg_quality=70))
        ),
    )
    assert rx.wait_ack("set").status == A.ACK_STATUS_DONE
    frame = capture_ok(rx, "c2")
    assert frame.settings.jpeg_quality == 70 and frame.width == 320  # merged on top
    rx.send(Kind.DESIRED, b"", retain=True)  # clean up the retained message


def test_restart_and_reannounce(setup):
    rx, _agent = setup
    first = max(s.session for s in rx.got.states if s.presence == state_pb2.PRESENCE_ONLINE)
    rx.command("re", reannounce=A.Reannounce())
    assert rx.wait_ack("re").status == A.ACK_STATUS_DONE
    rx.wait_for(
        lambda g: sum(s.presence == state_pb2.PRESENCE_ONLINE for s in g.states) >= 2,
        what="second birth",
    )
    assert rx.got.telemetry and rx.got.telemetry[-1].spool_depth == 0
    rx.command("restart", reboot=A.Reboot(agent_only=True))
    assert rx.wait_ack("restart", final=False).status == A.ACK_STATUS_ACCEPTED
    rx.wait_for(
        lambda g: any(
            s.presence == state_pb2.PRESENCE_ONLINE and s.session > first for s in g.states
        ),
        what="birth after restart",
    )
    offline = [s for s in rx.got.states if s.presence == state_pb2.PRESENCE_OFFLINE]
    assert offline and offline[0].session == first  # orderly death with the same session
    frame = capture_ok(rx, "after-restart")
    assert frame.session > first


def test_large_frames_are_chunked_and_latest_jpeg_preview(
    shared_mosquitto, tmp_path, device_id, run_agent, receiver_for
):
    rx = receiver_for(shared_mosquitto, device_id)
    cfg = agent_config(
        tmp_path,
        shared_mosquitto,
        device_id,
        broker={"max_payload": 4096},
        camera={"width": 640, "height": 480, "jpeg_quality": 95},
        frames={"latest_jpeg": True, "preview_max_side": 64},
    )
    run_agent(cfg)
    rx.wait_for(lambda g: bool(g.states), what="birth")
    frame = capture_ok(rx, "big")
    assert frame.size > 4 * 4096  # travelled as several chunks, reassembled and verified
    assert rx.reassembler.stats.completed == 1
    rx.wait_for(lambda g: bool(g.latest_jpeg), what="latest jpeg")
    preview = Image.open(io.BytesIO(rx.got.latest_jpeg[-1]))
    assert max(preview.size) == 64


def test_full_spool_drops_oldest_with_an_event(
    shared_mosquitto, tmp_path, device_id, run_agent, receiver_for
):
    rx = receiver_for(shared_mosquitto, device_id, receipts=False)
    running = run_agent(
        agent_config(tmp_path, shared_mosquitto, device_id, spool={"max_frames": 3})
    )
    agent = running.agent
    rx.wait_for(lambda g: bool(g.states), what="birth")
    for i in range(5):
        rx.command(f"c{i}", capture=A.CaptureNow())
        assert rx.wait_ack(f"c{i}").status == A.ACK_STATUS_DONE
    rx.wait_for(lambda g: sum(e.type == "spool_dropped" for e in g.events) == 2, what="drops")
    drops = [e for e in rx.got.events if e.type == "spool_dropped"]
    session = rx.got.acks[0].session
    assert [e.attributes["first"] for e in drops] == [f"{session}-1", f"{session}-2"]
    assert [(k.session, k.seq) for k in agent.spool.frame_keys()] == [
        (session, s) for s in (3, 4, 5)
    ]
    t = telemetry_sample(rx)
    assert t.spool_depth == 3 and t.spool_bytes == agent.spool.total_bytes
    assert t.HasField("mem_free") and t.HasField("disk_free") and t.HasField("cpu_load")
    assert t.camera_status == "ok" and t.uptime_ms > 0


def telemetry_sample(rx):
    count = len(rx.got.telemetry)
    rx.command(f"re-{count}", reannounce=A.Reannounce())
    rx.wait_for(lambda g: len(g.telemetry) > count, what="telemetry")
    return rx.got.telemetry[-1]


def test_group_command_and_desired_schedule(
    shared_mosquitto, tmp_path, device_id, run_agent, receiver_for
):
    rx = receiver_for(shared_mosquitto, device_id)
    group = f"g-{device_id}"
    running = run_agent(
        agent_config(tmp_path, shared_mosquitto, device_id, device={"groups": [group]})
    )
    agent = running.agent
    rx.wait_for(lambda g: bool(g.states), what="birth")
    assert list(rx.got.states[-1].groups) == [group]  # announced, so the controller knows
    cmd = A.Command(id="grp", group=group, capture=A.CaptureNow())
    rx.client.publish(group_cmd_topic(group), codec.encode(cmd), qos=1).wait_for_publish(5)
    assert rx.wait_ack("grp").status == A.ACK_STATUS_DONE
    # A desired schedule (1 s: the smallest the contract's integer seconds allow) runs locally.
    desired = config_pb2.Desired(
        version=1, config=config_pb2.DeviceConfig(schedule=config_pb2.CaptureSchedule(interval_s=1))
    )
    rx.send(Kind.DESIRED, desired, retain=True)
    rx.wait_for(
        lambda g: sum(f.metadata.get("trigger") == "schedule" for f in g.frames.values()) >= 2,
        what="2 scheduled frames",
    )
    assert agent.schedule.interval_s == 1
    rx.send(Kind.DESIRED, b"", retain=True)

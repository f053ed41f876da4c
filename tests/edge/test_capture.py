"""A capture command produces a frame a subscriber decodes and verifies (real mosquitto)."""

from __future__ import annotations

import hashlib
import io

from PIL import Image

from camfleet.edge.cameras.synthetic import SyntheticCamera
from camfleet.edge.telemetry import system_uptime_ms
from camfleet.proto.v1 import command_pb2, common_pb2, state_pb2
from tests.edge.conftest import agent_config


def proc_uptime_ms() -> int:
    with open("/proc/uptime") as f:
        return int(float(f.read().split()[0]) * 1000)


def test_capture_command_produces_verified_frame(
    shared_mosquitto, tmp_path, device_id, run_agent, receiver_for
):
    rx = receiver_for(shared_mosquitto, device_id)
    cfg = agent_config(
        tmp_path,
        shared_mosquitto,
        device_id,
        device={"location": {"lat": 48.5, "lon": 9.25, "name": "garden"}},
    )
    running = run_agent(cfg)
    rx.wait_for(
        lambda g: any(s.presence == state_pb2.PRESENCE_ONLINE for s in g.states), what="birth"
    )
    birth = [s for s in rx.got.states if s.presence == state_pb2.PRESENCE_ONLINE][-1]
    rx.wait_for(lambda g: bool(g.telemetry) and bool(g.reported), what="telemetry and reported")
    assert rx.got.telemetry[0].session == birth.session  # a sample comes with every birth
    assert birth.platform == "synthetic" and birth.board == "test-board"
    assert birth.session >= 1 and "chunks" in birth.capabilities

    before_ms = system_uptime_ms()
    rx.command(
        "c1",
        capture=command_pb2.CaptureNow(
            overrides=common_pb2.CameraSettings(width=320, height=240, jpeg_quality=60, hflip=True),
            metadata={"why": "test"},
        ),
    )
    ack = rx.wait_ack("c1")
    assert ack.status == command_pb2.ACK_STATUS_DONE, ack.detail
    assert len(ack.capture_ids) == 1
    rx.wait_for(lambda g: len(g.frames) == 1, what="the frame")
    frame = next(iter(rx.got.frames.values()))
    # uptime_ms is the machine's (as in Telemetry), not the agent process's.
    assert before_ms <= frame.uptime_ms <= system_uptime_ms()
    assert rx.got.telemetry[0].uptime_ms <= frame.uptime_ms
    assert abs(frame.uptime_ms - proc_uptime_ms()) < 60_000
    # codec.decode already checked size and sha256; check them again explicitly.
    assert hashlib.sha256(frame.data).digest() == frame.sha256 and frame.size == len(frame.data)
    assert frame.capture_id == ack.capture_ids[0] and frame.command_id == "c1"
    assert frame.session == birth.session and frame.seq == 1 and not frame.historical
    assert (frame.width, frame.height) == (320, 240)
    assert frame.settings.jpeg_quality == 60 and frame.settings.hflip
    assert frame.metadata["why"] == "test" and frame.metadata["location_name"] == "garden"
    image = Image.open(io.BytesIO(frame.data))
    assert image.format == "JPEG" and image.size == (320, 240)
    exif = image.getexif()
    assert exif[315] == device_id and exif[270] == "garden"  # Artist, ImageDescription
    assert exif.get_ifd(0x8825)[1] == "N"
    # The receipt removes it from the spool.
    agent = running.agent
    assert agent.wait_until(lambda: agent.spool.depth == 0, 10), "receipt did not empty the spool"


def test_capture_over_the_embedded_demo_broker(
    amqtt_broker, tmp_path, device_id, run_agent, receiver_for
):
    """The zero-install demo runs agents against amqtt (MQTT 3.1.1): same contract there."""
    rx = receiver_for(amqtt_broker, device_id)
    agent = run_agent(agent_config(tmp_path, amqtt_broker, device_id)).agent
    rx.wait_for(
        lambda g: any(s.presence == state_pb2.PRESENCE_ONLINE for s in g.states), what="birth"
    )
    rx.command("c1", capture=command_pb2.CaptureNow())
    assert rx.wait_ack("c1").status == command_pb2.ACK_STATUS_DONE
    rx.wait_for(lambda g: len(g.frames) == 1, what="the frame")
    assert agent.wait_until(lambda: agent.spool.depth == 0, 10), "receipt did not arrive"


class FlakyCamera(SyntheticCamera):
    """Its capabilities() fails twice: the birth/will cannot be built for two connects."""

    failures = 2

    def capabilities(self):  # type: ignore[no-untyped-def]
        if FlakyCamera.failures:
            FlakyCamera.failures -= 1
            raise RuntimeError("simulated bug while building the birth")
        return super().capabilities()


def test_session_survives_a_failing_callback(
    shared_mosquitto, tmp_path, device_id, run_agent, receiver_for
):
    rx = receiver_for(shared_mosquitto, device_id)
    cfg = agent_config(tmp_path, shared_mosquitto, device_id)
    running = run_agent(cfg, camera=FlakyCamera({"seed": 1}))
    assert running.agent.online.wait(60), "the agent gave up reconnecting"
    assert FlakyCamera.failures == 0
    # The birth follows the agent's SUBSCRIBE on its connection: once the receiver has it, the
    # broker routes commands to the agent (its first session exists only from this connect).
    rx.wait_for(
        lambda g: any(s.presence == state_pb2.PRESENCE_ONLINE for s in g.states), what="birth"
    )
    rx.command("c1", capture=command_pb2.CaptureNow())
    assert rx.wait_ack("c1").status == command_pb2.ACK_STATUS_DONE

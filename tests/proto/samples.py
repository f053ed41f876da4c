"""One valid message of every topic kind, for tests across the suite."""

from __future__ import annotations

import hashlib
import os

from camfleet.proto import codec
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import (
    command_pb2,
    common_pb2,
    config_pb2,
    frame_pb2,
    ota_pb2,
    state_pb2,
    telemetry_pb2,
)


def sample_frame(data: bytes | None = None, **fields: object) -> frame_pb2.Frame:
    data = os.urandom(2000) if data is None else data
    fields.setdefault("captured_at_ms", 1_790_000_000_000)
    fields.setdefault("settings", common_pb2.CameraSettings(width=640, height=480, jpeg_quality=80))
    session = int(fields.pop("session", 7))  # type: ignore[call-overload]
    seq = int(fields.pop("seq", 1))  # type: ignore[call-overload]
    return codec.make_frame(data, session=session, seq=seq, width=640, height=480, **fields)


def _chunk() -> frame_pb2.FrameChunk:
    frame = sample_frame(os.urandom(5000))
    from camfleet.proto.chunking import split_frame

    return split_frame(frame, max_payload=2048)[0]


SAMPLES = {
    Kind.STATE: state_pb2.DeviceState(
        presence=state_pb2.PRESENCE_ONLINE,
        session=7,
        timestamp_ms=1_790_000_000_000,
        firmware_version="0.1.0",
        platform="esp32",
        board="ai-thinker",
        capabilities=["jpeg", "deep_sleep", "ota"],
        wake_cause=common_pb2.WAKE_CAUSE_TIMER,
    ),
    Kind.FRAME: sample_frame(),
    Kind.CHUNK: _chunk(),
    Kind.TELEMETRY: telemetry_pb2.Telemetry(
        timestamp_ms=1_790_000_000_000,
        session=7,
        uptime_ms=4200,
        battery_mv=3900,
        rssi_dbm=-61,
        heap_free=80_000,
        spool_depth=2,
        extra={"lux": 312.0},
    ),
    Kind.EVENT: telemetry_pb2.Event(
        type="motion",
        severity=telemetry_pb2.SEVERITY_INFO,
        message="PIR",
        session=7,
        attributes={"pin": "13"},
    ),
    Kind.ACK: command_pb2.Ack(
        command_id="c-1", status=command_pb2.ACK_STATUS_DONE, session=7, capture_ids=["7-2"]
    ),
    Kind.REPORTED: config_pb2.Reported(
        version=3,
        config=config_pb2.DeviceConfig(schedule=config_pb2.CaptureSchedule(interval_s=600)),
    ),
    Kind.OTA_REQUEST: ota_pb2.OtaBlockRequest(
        artifact_id="fw-1", first_block=0, count=8, wanted=b"\xff"
    ),
    Kind.CMD: command_pb2.Command(
        id="c-1",
        issued_at_ms=1,
        expires_at_ms=2_000_000_000_000,
        capture=command_pb2.CaptureNow(
            count=2, overrides=common_pb2.CameraSettings(jpeg_quality=90)
        ),
    ),
    Kind.RECEIPT: frame_pb2.Receipt(
        stored=[frame_pb2.SeqRange(session=7, first_seq=1, last_seq=4)]
    ),
    Kind.DESIRED: config_pb2.Desired(
        version=3, config=config_pb2.DeviceConfig(sleep=config_pb2.SleepPolicy(deep_sleep=True))
    ),
    Kind.OTA_BLOCK: ota_pb2.OtaBlock(
        artifact_id="fw-1",
        index=0,
        total_blocks=2,
        data=b"\x01" * 64,
        sha256=hashlib.sha256(b"\x01" * 64).digest(),
    ),
}

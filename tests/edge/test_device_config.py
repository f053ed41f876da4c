"""Layering of the effective DeviceConfig and its validation."""

from __future__ import annotations

import pytest

from camfleet.edge import cameras, device_config
from camfleet.edge.schedule import Schedule
from camfleet.proto.v1 import common_pb2, config_pb2

D = config_pb2.DeviceConfig


def test_layers_merge_field_by_field_and_replace_repeated_fields():
    base = D(
        camera=common_pb2.CameraSettings(width=640, height=480, jpeg_quality=80),
        schedule=config_pb2.CaptureSchedule(daily_times_s=[3600, 7200]),
    )
    desired = D(
        camera=common_pb2.CameraSettings(jpeg_quality=50),
        schedule=config_pb2.CaptureSchedule(daily_times_s=[60]),
    )
    desired.camera.backend["awb_mode"] = "cloudy"
    overlay = D(camera=common_pb2.CameraSettings(hflip=True))
    merged = device_config.merge(base, desired, overlay)
    assert (merged.camera.width, merged.camera.jpeg_quality, merged.camera.hflip) == (640, 50, True)
    assert list(merged.schedule.daily_times_s) == [60]  # replaced, not appended
    assert merged.camera.backend["awb_mode"] == "cloudy"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (D(camera=common_pb2.CameraSettings(saturation=-101)), "saturation=-101"),
        (D(schedule=config_pb2.CaptureSchedule(cron="* * *")), "5 fields"),
        (D(schedule=config_pb2.CaptureSchedule(cron="* * * * *", interval_s=5)), "not both"),
        (D(schedule=config_pb2.CaptureSchedule(daily_times_s=[86400])), "below 86400"),
        (D(schedule=config_pb2.CaptureSchedule(burst_count=11)), "burst_count=11"),
        (D(max_payload=100), "max_payload=100"),
        (D(spool_max_bytes=10), "spool_max_bytes"),
    ],
)
def test_validation_names_the_field(config, message):
    camera = cameras.create("synthetic")
    with pytest.raises(ValueError, match=message):
        device_config.validate(config, camera, max_burst=10)


def test_remote_schedule_replaces_the_file_schedule():
    file_schedule = Schedule(interval_s=0.5)
    effective = D(schedule=config_pb2.CaptureSchedule(interval_s=60, burst_count=3))
    assert device_config.schedule_of(effective, D(), file_schedule) is file_schedule
    remote = D(schedule=config_pb2.CaptureSchedule(interval_s=60))
    got = device_config.schedule_of(effective, remote, file_schedule)
    assert got == Schedule(interval_s=60.0, burst_count=3)

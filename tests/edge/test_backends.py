"""Camera backends: hardware ones against the vendor conformance fakes (tests/fakes), synthetic,
folder and opencv for real (opencv reads a video file written by OpenCV itself)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from camfleet.edge import cameras
from camfleet.edge.cameras.base import CameraError
from camfleet.edge.cameras.settings import SettingsError
from camfleet.proto.v1 import command_pb2, common_pb2, state_pb2
from tests.edge.conftest import agent_config

S = common_pb2.CameraSettings


def jpeg_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image.size


# --- picamera2 ---------------------------------------------------------------------------------


def test_picamera2_maps_settings_to_configuration_and_controls(vendor_fakes):
    import picamera2

    picamera2.Picamera2.calls.clear()
    cam = cameras.create("picamera2")
    with cam:
        settings = S(
            width=640,
            height=480,
            jpeg_quality=70,
            hflip=True,
            brightness=50,
            contrast=-50,
            exposure_us=10000,
            analogue_gain=2.0,
            white_balance=common_pb2.WHITE_BALANCE_SUNNY,
            crop_x=0.25,
            crop_y=0.25,
            crop_w=0.5,
            crop_h=0.5,
        )
        cam.validate(settings)
        cap = cam.capture(settings)
        fake = picamera2.Picamera2.instances[-1]
        assert jpeg_size(cap.jpeg) == (640, 480) == (cap.width, cap.height)
        configure = next(c for c in fake.calls if c[0] == "configure")[1]
        assert configure["main"]["size"] == (640, 480)
        assert configure["transform"].hflip == 1 and configure["transform"].vflip == 0
        controls = fake.controls
        assert controls["Brightness"] == 0.5 and controls["Contrast"] == 0.5
        assert controls["AeEnable"] is False and controls["ExposureTime"] == 10000
        assert controls["AnalogueGain"] == 2.0 and controls["AwbMode"] == 5
        assert controls["ScalerCrop"] == (1014, 760, 2028, 1520)
        assert fake.options["quality"] == 70 and fake.open_requests == 0  # request released
        assert cap.metadata["Lux"] == "312.5" and cap.settings.exposure_us == 10000
        # Same size and transform again: no reconfiguration.
        cam.capture(S(width=640, height=480, hflip=True))
        assert sum(c[0] == "configure" for c in fake.calls) == 1
        extra = S(width=640, height=480, hflip=True)
        extra.backend["ColourGains"] = "1.5,2.25"
        cam.capture(extra)
        assert fake.controls["ColourGains"] == (1.5, 2.25)
        extra.backend["ColourGains"] = "1.5,40"
        with pytest.raises(SettingsError, match="ColourGains"):
            cam.validate(extra)
        with pytest.raises(SettingsError, match="rotates by 0 or 180"):
            cam.validate(S(rotation=90))
        with pytest.raises(SettingsError, match=r"AnalogueGain=30\.0 is outside"):
            cam.validate(S(analogue_gain=30.0))
        with pytest.raises(SettingsError, match="largest is 4056x3040"):
            cam.validate(S(width=8000, height=6000))
        cap = cam.capture(S(width=320, height=240, rotation=180))
        configure = [c for c in fake.calls if c[0] == "configure"][-1][1]
        assert configure["transform"].hflip == 1 and configure["transform"].vflip == 1
    assert fake.closed


def test_picamera2_older_release_without_create_configuration(vendor_fakes, monkeypatch):
    import picamera2

    monkeypatch.setattr(picamera2, "Picamera2", picamera2.LegacyPicamera2)
    cam = cameras.create("picamera2")
    with cam:
        cap = cam.capture(S(width=320, height=240, vflip=True))
        assert jpeg_size(cap.jpeg) == (320, 240)
        fake = picamera2.Picamera2.instances[-1]
        configure = [c for c in fake.calls if c[0] == "configure"][-1][1]
        assert configure["transform"].vflip == 1 and configure["main"]["size"] == (320, 240)


# --- picamera (legacy) -------------------------------------------------------------------------


def test_picamera_maps_settings_and_errors(vendor_fakes):
    import picamera

    picamera.PiCamera.calls.clear()
    cam = cameras.create("picamera")
    cam.open()
    settings = S(
        width=1024,
        height=768,
        jpeg_quality=60,
        brightness=-100,
        contrast=30,
        iso=400,
        white_balance=common_pb2.WHITE_BALANCE_SUNNY,
        effect=common_pb2.EFFECT_GRAYSCALE,
        rotation=90,
        vflip=True,
    )
    settings.backend["exposure_mode"] = "night"
    cap = cam.capture(settings)
    sets = {c[1]: c[2] for c in picamera.PiCamera.calls if c[0] == "set"}
    assert sets["resolution"] == (1024, 768) and sets["brightness"] == 0
    assert sets["contrast"] == 30 and sets["iso"] == 400 and sets["awb_mode"] == "sunlight"
    assert sets["color_effects"] == (128, 128) and sets["exposure_mode"] == "night"
    assert sets["rotation"] == 90 and sets["vflip"] is True
    assert ("capture", "jpeg", 60, None) in picamera.PiCamera.calls
    assert jpeg_size(cap.jpeg) == (768, 1024) == (cap.width, cap.height)
    bad = S()
    bad.backend["exposure_mode"] = "moonlight"
    with pytest.raises(SettingsError, match="Invalid exposure mode"):
        cam.capture(bad)
    picamera.PiCamera.fail_next_capture = True
    with pytest.raises(CameraError, match="Timed out"):
        cam.capture(S())
    cam.close()
    assert picamera.PiCamera.calls[-1] == ("close",)
    with pytest.raises(CameraError, match="not open"):
        cam.capture(S())


# --- maix --------------------------------------------------------------------------------------


def test_maix_maps_settings(vendor_fakes):
    from maix import camera as maix_camera

    maix_camera.calls.clear()
    cam = cameras.create("maix")
    with cam:
        cap = cam.capture(
            S(
                width=320,
                height=240,
                brightness=100,
                contrast=-100,
                hflip=True,
                exposure_us=5000,
                warmup_frames=3,
                jpeg_quality=50,
                crop_x=0,
                crop_y=0,
                crop_w=0.5,
                crop_h=0.5,
            )
        )
        assert jpeg_size(cap.jpeg) == (320, 240)
        calls = maix_camera.calls
        assert ("Camera", 320, 240, 0, 30) in calls
        for call in [
            ("luma", 100),
            ("constrast", 0),
            ("hmirror", 1),
            ("exposure", 5000),
            ("exp_mode", 1),
            ("skip_frames", 3),
            ("set_windowing", [0, 0, 160, 120]),
        ]:
            assert call in calls, call
        # no crop any more: the sensor window goes back to the whole frame; luma, constrast and
        # saturation at the ends of their range (0 included) are set, not skipped
        maix_camera.calls.clear()
        cam.capture(S(width=320, height=240, brightness=-100, saturation=-100))
        assert ("set_windowing", [0, 0, 320, 240]) in maix_camera.calls
        for call in [("luma", 0), ("constrast", 50), ("saturation", 0)]:
            assert call in maix_camera.calls, call
        maix_camera.calls.clear()
        cam.capture(S(width=320, height=240))
        assert not any(c[0] == "set_windowing" for c in maix_camera.calls)  # nothing changed
        with pytest.raises(SettingsError, match="white_balance auto only"):
            cam.validate(S(white_balance=common_pb2.WHITE_BALANCE_CLOUDY))
        with pytest.raises(SettingsError, match="largest is 2560x1440"):
            cam.validate(S(width=3840, height=2160))
    assert calls[-1] == ("close",)


def test_agent_with_fake_picamera_reports_camera_failure(
    vendor_fakes, shared_mosquitto, tmp_path, device_id, run_agent, receiver_for
):
    import picamera

    rx = receiver_for(shared_mosquitto, device_id)
    cfg = agent_config(
        tmp_path,
        shared_mosquitto,
        device_id,
        camera={"backend": "picamera", "width": 640, "height": 480, "options": {}},
    )
    run_agent(cfg)
    rx.wait_for(
        lambda g: any(s.presence == state_pb2.PRESENCE_ONLINE for s in g.states), what="birth"
    )
    assert rx.got.states[-1].platform == "picamera"
    rx.command("ok", capture=command_pb2.CaptureNow())
    assert rx.wait_ack("ok").status == command_pb2.ACK_STATUS_DONE
    rx.wait_for(lambda g: len(g.frames) == 1, what="frame")
    assert next(iter(rx.got.frames.values())).width == 640
    picamera.PiCamera.fail_next_capture = True
    rx.command("fail", capture=command_pb2.CaptureNow())
    ack = rx.wait_ack("fail")
    assert ack.status == command_pb2.ACK_STATUS_FAILED and "Timed out" in ack.detail
    rx.wait_for(lambda g: any(e.type == "camera_error" for e in g.events), what="event")
    # The failed camera was closed; the next capture reopens it and works.
    rx.command("again", capture=command_pb2.CaptureNow())
    assert rx.wait_ack("again").status == command_pb2.ACK_STATUS_DONE
    assert picamera.PiCamera.calls.count(("__init__", 0)) == 2


# --- real backends -----------------------------------------------------------------------------


def test_synthetic_is_deterministic_by_seed():
    a, b, c = (cameras.create("synthetic", {"seed": s, "label": "x"}) for s in (1, 1, 2))
    frames = [cam.render((160, 120), 5, 1_700_000_000.0).tobytes() for cam in (a, b, c)]
    assert frames[0] == frames[1] and frames[0] != frames[2]
    assert a.render((160, 120), 6, 1_700_000_000.0).tobytes() != frames[0]  # it moves


def test_folder_replays_in_order_and_stops_without_loop(tmp_path):
    for i, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (80, 60), colour).save(tmp_path / f"{i:02d}.jpg", quality=90)
    cam = cameras.create("folder", {"path": str(tmp_path), "loop": False})
    with cam:
        names = [cam.capture(S()).metadata["source_file"] for _ in range(3)]
        assert names == ["00.jpg", "01.jpg", "02.jpg"]
        with pytest.raises(CameraError, match="all 3 files replayed"):
            cam.capture(S())
    looping = cameras.create("folder", {"path": str(tmp_path)})
    with looping:
        for _ in range(3):
            looping.capture(S())
        cap = looping.capture(S(width=40, height=30, hflip=True))
        assert cap.metadata["source_file"] == "00.jpg" and jpeg_size(cap.jpeg) == (40, 30)
        raw = (tmp_path / "01.jpg").read_bytes()
        assert looping.capture(S()).jpeg == raw  # untouched files are sent as they are


def test_opencv_reads_a_real_video_file(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(5):
        writer.write(np.full((120, 160, 3), i * 40, dtype=np.uint8))
    writer.release()
    cam = cameras.create("opencv", {"device": str(path)})
    with cam:
        caps = [cam.capture(S(jpeg_quality=80)) for _ in range(5)]
        assert all(jpeg_size(c.jpeg) == (160, 120) for c in caps)
        levels = [np.asarray(Image.open(io.BytesIO(c.jpeg))).mean() for c in caps]
        assert levels == sorted(levels) and levels[-1] - levels[0] > 100
        with pytest.raises(CameraError, match="no frame"):
            cam.capture(S())
    with pytest.raises(CameraError, match="cannot open"):
        cameras.create("opencv", {"device": str(tmp_path / "missing.avi")}).open()

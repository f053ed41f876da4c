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


def test_picamera2_2022_release_by_capability(vendor_fakes_2022):
    """The 2022 README's API: list_controls(), still_configuration(), no event loop until
    start_preview(), save(name, filename), close_camera()."""
    import picamera2

    assert not hasattr(picamera2.Picamera2, "camera_controls")  # the 2022 fake, not today's
    picamera2.Picamera2.calls.clear()
    cam = cameras.create("picamera2")
    with cam:
        settings = S(width=320, height=240, vflip=True, jpeg_quality=60, brightness=50)
        cam.validate(settings)
        cap = cam.capture(settings)
        assert jpeg_size(cap.jpeg) == (320, 240)
        fake = picamera2.Picamera2.instances[-1]
        names = [c[0] for c in fake.calls]
        assert names.index("start_preview") < names.index("start")  # the loop before frames
        configure = [c for c in fake.calls if c[0] == "configure"][-1][1]
        assert configure["transform"].vflip == 1 and configure["main"]["size"] == (320, 240)
        assert configure["use_case"] == "still" and configure["lores"] is None
        assert fake.controls["Brightness"] == 0.5 and fake.open_requests == 0
        assert cap.metadata["Lux"] == "312.5"
        # limits come from list_controls(): still checked before anything is set
        with pytest.raises(SettingsError, match=r"AnalogueGain=30\.0 is outside"):
            cam.validate(S(analogue_gain=30.0))
        cam.capture(S(width=640, height=480))  # reconfigure: the loop is not started twice
        assert [c[0] for c in fake.calls].count("start_preview") == 1
    assert fake.closed


def test_picamera2_today_starts_one_event_loop_and_no_lores(vendor_fakes):
    import picamera2

    # "lores" configured a stream nothing read; the option is gone and no longer adds one
    cam = cameras.create("picamera2", {"lores": [160, 120]})
    with cam:
        cam.capture(S(width=320, height=240))
        cam.capture(S(width=640, height=480))
        fake = picamera2.Picamera2.instances[-1]
        assert [c[0] for c in fake.calls].count("start_preview") == 1
        configs = [c[1] for c in fake.calls if c[0] == "configure"]
        assert len(configs) == 2 and all(c["lores"] is None for c in configs)


# --- picamera (legacy) -------------------------------------------------------------------------


class SimClock:
    """One clock for the backend and the fake camera: sleeping moves it, no real time passes."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


@pytest.fixture
def sim_clock(monkeypatch):
    from camfleet.edge.cameras.picamera import PiCameraCamera

    clock = SimClock()
    monkeypatch.setattr(PiCameraCamera, "clock", staticmethod(clock), raising=False)
    monkeypatch.setattr(PiCameraCamera, "sleep", staticmethod(clock.sleep), raising=False)
    return clock


def _use_clock(monkeypatch, picamera_module, clock: SimClock) -> None:
    monkeypatch.setattr(picamera_module.PiCamera, "clock", staticmethod(clock))


def test_picamera_maps_settings_and_errors(vendor_fakes, sim_clock, monkeypatch):
    import picamera

    _use_clock(monkeypatch, picamera, sim_clock)
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
    # no preview: the first capture waited for the gains to settle (2 s after opening), once
    assert ("capture", "jpeg", 60, None, 2.0) in picamera.PiCamera.calls
    assert sim_clock.slept == [2.0]
    assert jpeg_size(cap.jpeg) == (768, 1024) == (cap.width, cap.height)
    assert Image.open(io.BytesIO(cap.jpeg)).getpixel((0, 0))[1] > 60  # not the dark frame
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
    assert sim_clock.slept == [2.0]  # later captures did not wait again


def test_picamera_early_api_by_capability(vendor_fakes_2022, sim_clock, monkeypatch):
    """The early picamera API: PiCamera() without arguments, ISO, crop, exceptions in the
    picamera namespace, no color_effects or exif_tags."""
    import picamera

    assert not hasattr(picamera, "exc")  # the early fake, not 1.13's
    _use_clock(monkeypatch, picamera, sim_clock)
    picamera.PiCamera.calls.clear()
    cam = cameras.create("picamera", {"settle_s": 2.0})
    with cam:
        sim_clock.now += 0.5  # half a second passes before the first capture
        cap = cam.capture(S(width=640, height=480, iso=200, crop_x=0.25, crop_y=0.25,
                            crop_w=0.5, crop_h=0.5))  # fmt: skip
        sets = {c[1]: c[2] for c in picamera.PiCamera.calls if c[0] == "set"}
        assert sets["ISO"] == 200 and sets["crop"] == (0.25, 0.25, 0.5, 0.5)
        assert sim_clock.slept == [1.5]  # the rest of the settle time
        assert jpeg_size(cap.jpeg) == (640, 480)
        assert Image.open(io.BytesIO(cap.jpeg)).getpixel((0, 0))[1] > 60
        with pytest.raises(SettingsError, match="no color_effects"):
            cam.capture(S(effect=common_pb2.EFFECT_SEPIA))
        with pytest.raises(SettingsError, match="Invalid ISO"):
            cam.capture(S(iso=1600))  # the early range stops at 800
    assert picamera.PiCamera.calls[0] == ("__init__",)
    with pytest.raises(CameraError, match="one camera"):
        cameras.create("picamera", {"camera_num": 1}).open()


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
    vendor_fakes, sim_clock, monkeypatch, shared_mosquitto, tmp_path, device_id, run_agent,
    receiver_for,
):  # fmt: skip
    import picamera

    _use_clock(monkeypatch, picamera, sim_clock)  # the settle wait costs no real time
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

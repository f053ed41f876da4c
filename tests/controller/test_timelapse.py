"""``camfleet frames timelapse``: 100 stored frames as a GIF and an MP4 that real decoders open."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from camfleet.cli import cli
from camfleet.mosquitto import free_port
from camfleet.testing.controller_process import Waiter
from camfleet.testing.pictures import picture_jpeg

T0 = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC)


def _iso(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def run(api: str, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), env={"CAMFLEET_API": api}, catch_exceptions=False)


def test_timelapse_gif_and_mp4(controllers, devices, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    ctl = controllers(http=f"127.0.0.1:{port}")
    api = f"http://127.0.0.1:{port}"
    dev = devices("tl")
    start = int(T0.timestamp() * 1000)
    # 100 frames a minute apart, and one on each side of the range that must stay out.
    for i in range(-1, 101):
        frame = dev.make_frame(
            data=picture_jpeg(i + 1, size=(320, 240)), captured_at_ms=start + i * 60_000
        )
        dev.publish_frame(frame)
    assert dev.wait_receipted(timeout=60)
    waiter = Waiter(ctl)

    def stored() -> int:
        with ctl.db.read() as tx:  # a new snapshot each time
            return int(tx.scalar("SELECT COUNT(*) FROM frames"))

    assert waiter.wait_for(lambda: stored() == 102)

    gif = tmp_path / "out.gif"
    result = run(
        api, "frames", "timelapse", dev.device_id, "--from", _iso(0), "--to", _iso(6000),
        "--fps", "12", "-o", str(gif),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"{gif}: 100 frames of {dev.device_id} at 12 fps" in result.stdout
    assert "timelapse" in result.stderr  # the progress bar
    with Image.open(gif) as image:
        assert image.format == "GIF"
        assert image.n_frames == 100
        assert image.size == (320, 240)
        assert image.info["duration"] == 80  # 1000 / 12 fps, in the GIF's hundredths of a second

    mp4 = tmp_path / "out.mp4"
    result = run(
        api, "frames", "timelapse", dev.device_id, "--from", _iso(0), "--to", _iso(6000),
        "--fps", "25", "--json", "-o", str(mp4),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["frames"] == 100
    probe = subprocess.run(
        [
            "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
            "-show_entries", "stream=codec_name,width,height,nb_read_frames,avg_frame_rate",
            "-of", "json", str(mp4),
        ],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream["codec_name"] == "h264"
    assert (stream["width"], stream["height"]) == (320, 240)
    assert int(stream["nb_read_frames"]) == 100
    assert stream["avg_frame_rate"] == "25/1"
    assert not list(tmp_path.glob(".*part*"))  # no temporary file left

    # An empty range: one clear line, no file, no traceback.
    empty = tmp_path / "empty.gif"
    result = run(
        api, "frames", "timelapse", dev.device_id, "--from", _iso(-7200), "--to", _iso(-3600),
        "-o", str(empty),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "no frames of" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not empty.exists()
    result = run(api, "frames", "timelapse", dev.device_id, "--from", "yesterday", "--to",
                 _iso(1), "-o", str(empty))  # fmt: skip
    assert result.exit_code != 0 and "not an ISO 8601 time" in result.stderr
    result = run(api, "frames", "timelapse", dev.device_id, "--from", _iso(0), "--to",
                 _iso(1), "-o", str(tmp_path / "x.avi"))  # fmt: skip
    assert result.exit_code != 0 and "must end in .gif or .mp4" in result.stderr

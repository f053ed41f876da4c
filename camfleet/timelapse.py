"""``camfleet frames timelapse``: a device's frames in a time range as an animated GIF (Pillow)
or an MP4 (H.264 through ffmpeg), fetched from the controller's API.

Frames are fetched one at a time, oldest first, and scaled to one size (the first frame's,
at most ``--width`` wide): an MP4 streams through ffmpeg's stdin with constant memory; a GIF is
assembled by Pillow from palette frames (~width x height bytes each).
"""

from __future__ import annotations

import datetime as dt
import io
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from camfleet.errors import UserError

FORMATS = (".gif", ".mp4")


def parse_time(text: str, option: str) -> int:
    """ISO 8601 date or date-time (UTC unless it says otherwise) -> epoch milliseconds."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"{option} {text!r} is not an ISO 8601 time (e.g. 2026-11-26T08:00 or 2026-11-26)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def ffmpeg_exe() -> str:
    """imageio-ffmpeg's binary (``pip install 'camfleet[timelapse]'``), else ffmpeg on PATH."""
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        pass
    found = shutil.which("ffmpeg")
    if found is None:
        raise UserError(
            "an MP4 needs ffmpeg: pip install 'camfleet[timelapse]' (imageio-ffmpeg) or "
            "apt-get install ffmpeg; a .gif needs neither"
        )
    return found


def _size(first: Image.Image, width: int) -> tuple[int, int]:
    w, h = first.size
    if w > width:
        w, h = width, round(h * width / w)
    return w - w % 2, h - h % 2  # H.264 in yuv420p wants even sides


def _frames(images: Iterator[bytes], width: int) -> Iterator[Image.Image]:
    size: tuple[int, int] | None = None
    for data in images:
        try:
            with Image.open(io.BytesIO(data)) as source:
                image = source.convert("RGB")
        except OSError as exc:
            raise UserError(f"a frame is not an image Pillow can read: {exc}") from None
        if size is None:
            size = _size(image, width)
        if image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        yield image


def write_gif(images: Iterator[bytes], out: Path, fps: float, width: int) -> int:
    frames = [im.convert("P", palette=Image.Palette.ADAPTIVE) for im in _frames(images, width)]
    if not frames:
        return 0
    frames[0].save(
        out,
        "GIF",
        save_all=True,
        append_images=frames[1:],
        duration=round(1000 / fps),
        loop=0,
        optimize=False,
    )
    return len(frames)


def write_mp4(images: Iterator[bytes], out: Path, fps: float, width: int) -> int:
    frames = _frames(images, width)
    first = next(frames, None)
    if first is None:
        return 0
    w, h = first.size
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        f"{fps:g}",
        "-i",
        "-",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    count = 0
    try:
        for image in _chain(first, frames):
            proc.stdin.write(image.tobytes())
            count += 1
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.wait() != 0:
        line = err.strip().splitlines()[-1] if err.strip() else f"exit status {proc.returncode}"
        raise UserError(f"ffmpeg could not write {out}: {line}")
    return count


def _chain(first: Image.Image, rest: Iterator[Image.Image]) -> Iterator[Image.Image]:
    yield first
    yield from rest


def check_output(out: Path, fps: float) -> None:
    """Refuse what cannot be written, before anything is fetched."""
    if out.suffix.lower() not in FORMATS:
        raise UserError(f"-o {out}: the file must end in .gif or .mp4")
    if not fps > 0:
        raise UserError(f"--fps must be above 0, got {fps:g}")
    if out.suffix.lower() == ".mp4":
        ffmpeg_exe()


def make(
    ids: list[tuple[str, int]],
    fetch: Callable[[str], bytes],
    out: Path,
    fps: float,
    width: int,
    describe_range: str,
    progress: Callable[[int], Any] | None = None,
) -> int:
    """Write the timelapse of frames ``ids`` ((frame id, captured ms), oldest first); returns
    the number of frames. ``progress`` is called with 1 after each frame is fetched."""
    check_output(out, fps)
    suffix = out.suffix.lower()
    if not ids:
        raise UserError(f"no frames {describe_range}: nothing to make a timelapse of")

    def images() -> Iterator[bytes]:
        for frame_id, _ in ids:
            yield fetch(frame_id)
            if progress is not None:
                progress(1)

    tmp = out.with_name(f".{out.name}.part{suffix}")
    try:
        count = (write_gif if suffix == ".gif" else write_mp4)(images(), tmp, fps, width)
        tmp.replace(out)  # a half-written timelapse never has the name asked for
    finally:
        tmp.unlink(missing_ok=True)
    return count

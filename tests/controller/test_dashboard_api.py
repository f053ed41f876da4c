"""The dashboard's server side without a browser: the thumbnail cache's bound, the live event
stream's end when the controller stops."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx

from camfleet.controller.web.thumbs import ThumbCache, make_thumbnail
from camfleet.mosquitto import free_port
from camfleet.testing.pictures import picture_jpeg


def test_thumbnail_cache_made_once_and_bounded(tmp_path: Path) -> None:
    one = len(make_thumbnail(picture_jpeg(0, size=(640, 480))))
    cache = ThumbCache(tmp_path, budget_bytes=one * 5)
    reads: list[str] = []

    def reader(key: str, seed: int):  # type: ignore[no-untyped-def]
        def read() -> bytes:
            reads.append(key)
            return picture_jpeg(seed, size=(640, 480))

        return read

    first = cache.get("frames/a/1.jpg", reader("frames/a/1.jpg", 0))
    assert cache.get("frames/a/1.jpg", reader("frames/a/1.jpg", 0)) == first
    assert reads == ["frames/a/1.jpg"]  # made once
    for i in range(2, 30):
        cache.get(f"frames/a/{i}.jpg", reader(f"frames/a/{i}.jpg", i))
        os.utime(tmp_path / f"frames/a/{i}.jpg.thumb.jpg", (i, i))  # made in this order
    files = list(tmp_path.rglob("*.thumb.jpg"))
    assert sum(f.stat().st_size for f in files) <= one * 5 * 1.2
    assert (tmp_path / "frames/a/29.jpg.thumb.jpg").exists()  # the newest stay
    assert not (tmp_path / "frames/a/2.jpg.thumb.jpg").exists()  # the oldest went


def test_live_stream_ends_when_the_controller_stops(controllers, devices) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    ctl = controllers(http=f"127.0.0.1:{port}")
    got: list[str] = []
    opened, framed, ended = threading.Event(), threading.Event(), threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"http://127.0.0.1:{port}/api/v1/live", timeout=60) as r:
            for line in r.iter_lines():
                got.append(line)
                if line.startswith("retry:"):
                    opened.set()
                if line == "event: frame":
                    framed.set()
        ended.set()

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert opened.wait(60)
    dev = devices("sse")
    dev.send_frames(1)
    assert framed.wait(60)
    ctl.stop()
    assert ended.wait(60)
    assert any(dev.device_id in line for line in got)
    http_threads = [th for th in threading.enumerate() if th.name == "camfleet-http"]
    assert not any(th.is_alive() for th in http_threads)  # the server could stop

"""Gallery thumbnails: made once by Pillow, kept on disk under ``DATA/thumbs/``, bounded.

A thumbnail is named after its frame's store key (unique per frame), so a cached one never shows
another frame. The cache has a byte budget: past it, the least recently made or used files go
first (their frames may long be gone to retention, which does not know about thumbnails).
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from pathlib import Path

from PIL import Image

#: Longest side of a thumbnail, in pixels (a phone-width grid cell at 2x).
THUMB_PX = 320


class ThumbCache:
    def __init__(self, root: Path, budget_bytes: int = 256 * 1024 * 1024) -> None:
        self.root = root
        self.budget = budget_bytes
        self._lock = threading.Lock()
        self._total: int | None = None  # counted on first write (a walk of the directory)

    def _file(self, store_key: str) -> Path:
        safe = store_key.replace("..", "_")
        return self.root / f"{safe}.thumb.jpg"

    def get(self, store_key: str, read: Callable[[], bytes]) -> bytes:
        """The thumbnail of a frame; ``read`` gives the frame's bytes when it must be made."""
        path = self._file(store_key)
        try:
            data = path.read_bytes()
            os.utime(path)  # recently used: evicted last
            return data
        except FileNotFoundError:
            pass
        data = make_thumbnail(read())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # readers never see half a thumbnail
        self._added(len(data))
        return data

    def _added(self, size: int) -> None:
        with self._lock:
            if self._total is None:
                self._total = sum(p.stat().st_size for p in self.root.rglob("*.thumb.jpg"))
            else:
                self._total += size
            if self._total <= self.budget:
                return
            files = sorted(self.root.rglob("*.thumb.jpg"), key=lambda p: p.stat().st_mtime)
            total = sum(p.stat().st_size for p in files)
            for p in files:
                if total <= self.budget * 0.8:
                    break
                total -= p.stat().st_size
                p.unlink(missing_ok=True)
            self._total = total


def make_thumbnail(jpeg: bytes, size: int = THUMB_PX) -> bytes:
    """A JPEG at most ``size`` pixels on its longest side. Raises ValueError for bytes that are
    not an image Pillow can read."""
    try:
        with Image.open(io.BytesIO(jpeg)) as source:
            source.draft("RGB", (size, size))  # JPEG: decode at 1/2..1/8 scale, much faster
            image = source.convert("RGB")
        image.thumbnail((size, size))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=75)
        return out.getvalue()
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image: {exc}") from None

"""maix.image: Format and the few Image methods the agent uses."""

from __future__ import annotations

import enum


class Format(enum.IntEnum):
    FMT_RGB888 = 0
    FMT_BGR888 = 1
    FMT_RGBA8888 = 2
    FMT_GRAYSCALE = 6
    FMT_JPEG = 9


class Image:
    def __init__(
        self, width: int, height: int, format: Format = Format.FMT_RGB888, data: bytes | None = None
    ) -> None:
        self._w, self._h, self._format = width, height, format
        self._data = data if data is not None else bytes(width * height * 3)

    def width(self) -> int:
        return self._w

    def height(self) -> int:
        return self._h

    def format(self) -> Format:
        return self._format

    def data_size(self) -> int:
        return len(self._data)

    def to_bytes(self, copy: bool = True) -> bytes:
        return bytes(self._data)

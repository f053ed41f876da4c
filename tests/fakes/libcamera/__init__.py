"""Fake of the ``libcamera`` Python bindings: only Transform, as picamera2 users import it."""


class Transform:
    """libcamera.Transform(hflip=0, vflip=0, transpose=0)."""

    def __init__(self, hflip: int = 0, vflip: int = 0, transpose: int = 0) -> None:
        if transpose:
            raise ValueError("transpose is not supported by Raspberry Pi cameras")
        self.hflip = int(hflip)
        self.vflip = int(vflip)
        self.transpose = 0

    def __repr__(self) -> str:
        return f"<libcamera.Transform hflip={self.hflip} vflip={self.vflip}>"

"""Conformance fake of MaixPy's ``maix`` package: the ``camera`` and ``image`` modules as
documented at wiki.sipeed.com/maixpy/api/maix/camera.html and .../image.html. Getter/setter
methods take ``value=-1`` (-1 = read), ranges are checked (luma, constrast, saturation 0..100;
hmirror/vflip 0/1; exposure > 0; gain >= 1024), out-of-range raises ValueError like MaixPy's
err.Exception mapping; every call lands in ``camera.calls``."""

from . import camera, image

__all__ = ["camera", "image"]

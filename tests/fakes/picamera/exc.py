"""picamera.exc: the documented exception family."""


class PiCameraWarning(Warning):
    pass


class PiCameraError(Exception):
    pass


class PiCameraValueError(PiCameraError, ValueError):
    pass


class PiCameraRuntimeError(PiCameraError, RuntimeError):
    pass


class PiCameraClosed(PiCameraRuntimeError):
    pass


class PiCameraNotRecording(PiCameraRuntimeError):
    pass


class PiCameraAlreadyRecording(PiCameraRuntimeError):
    pass


class PiCameraMMALError(PiCameraError):
    pass

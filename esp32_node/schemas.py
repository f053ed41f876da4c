"""Schemas of the camfleet v1 messages the node sends and receives (see proto/camfleet/v1/).

Each schema is a tuple of ``(field number, name, type, label)`` for pb.py; only the fields the
node reads or writes are listed (unknown fields are skipped by the decoder, as protobuf does).
Keep the numbers in step with the .proto files: tests/esp32/test_pb.py round-trips every schema
against the generated classes.
"""

from pb import OPTIONAL as O
from pb import PLAIN as P
from pb import REPEATED as R

# common.proto: enum values the node uses
WAKE_POWER_ON = 1
WAKE_TIMER = 2
WAKE_EXT0 = 3
WAKE_EXT1 = 4
WAKE_ULP = 5
WAKE_TOUCH = 6
WAKE_SOFT_RESET = 7
WAKE_WATCHDOG = 8
WAKE_BROWNOUT = 9

PRESENCE_ONLINE = 1
PRESENCE_OFFLINE = 2
PRESENCE_ASLEEP = 3

ACK_ACCEPTED = 1
ACK_DONE = 2
ACK_FAILED = 3
ACK_EXPIRED = 4
ACK_REJECTED = 5

SEV_INFO = 2
SEV_WARNING = 3
SEV_ERROR = 4

SCHEME_HMAC_SHA256 = 1

CAMERA_SETTINGS = (
    (1, "width", "u", O),
    (2, "height", "u", O),
    (3, "jpeg_quality", "u", O),
    (4, "brightness", "s", O),
    (5, "contrast", "s", O),
    (6, "saturation", "s", O),
    (7, "sharpness", "s", O),
    (8, "hflip", "b", O),
    (9, "vflip", "b", O),
    (10, "white_balance", "u", O),
    (11, "effect", "u", O),
    (12, "exposure_us", "u", O),
    (13, "analogue_gain", "f", O),
    (14, "iso", "u", O),
    (15, "rotation", "u", O),
    (16, "warmup_frames", "u", O),
    (40, "backend", "m", P),
)

# frame.proto
FRAME_HEADER = (  # Frame without `data` (15): the node streams data itself
    (1, "capture_id", "S", P),
    (2, "session", "u", P),
    (3, "seq", "u", P),
    (4, "captured_at_ms", "i", P),
    (5, "content_type", "S", P),
    (6, "size", "u", P),
    (7, "sha256", "B", P),
    (8, "settings", CAMERA_SETTINGS, P),
    (9, "metadata", "m", P),
    (10, "historical", "b", P),
    (11, "wake_cause", "u", P),
    (12, "width", "u", P),
    (13, "height", "u", P),
    (14, "command_id", "S", P),
    (16, "uptime_ms", "u", P),
    (17, "incarnation", "B", P),
)

FRAME_CHUNK_HEADER = (  # FrameChunk without `data` (15)
    (1, "capture_id", "S", P),
    (2, "session", "u", P),
    (3, "seq", "u", P),
    (4, "index", "u", P),
    (5, "count", "u", P),
    (6, "total_size", "u", P),
    (7, "sha256", "B", P),
    (8, "header", FRAME_HEADER, P),
    (9, "offset", "u", P),
    (10, "incarnation", "B", P),
)

SEQ_RANGE = (
    (1, "session", "u", P),
    (2, "first_seq", "u", P),
    (3, "last_seq", "u", P),
    (4, "incarnation", "B", P),
)
RECEIPT = ((1, "stored", SEQ_RANGE, R), (2, "timestamp_ms", "i", P))

# state.proto
DEVICE_STATE = (
    (1, "presence", "u", P),
    (2, "session", "u", P),
    (3, "timestamp_ms", "i", P),
    (4, "firmware_version", "S", P),
    (5, "platform", "S", P),
    (6, "board", "S", P),
    (7, "capabilities", "S", R),
    (8, "wake_cause", "u", P),
    (9, "next_wake_ms", "i", P),
    (10, "desired_version", "u", P),
    (11, "ota_slot", "S", P),
    (12, "reset_reason", "S", P),
    (13, "max_payload", "u", P),
    (14, "info", "m", P),
    (15, "groups", "S", R),
    (16, "incarnation", "B", P),
)

# telemetry.proto
TELEMETRY = (
    (1, "timestamp_ms", "i", P),
    (2, "session", "u", P),
    (3, "uptime_ms", "u", P),
    (4, "wake_cause", "u", P),
    (5, "battery_mv", "u", O),
    (7, "rssi_dbm", "s", O),
    (8, "heap_free", "u", O),
    (9, "psram_free", "u", O),
    (10, "temperature_c", "f", O),
    (11, "spool_depth", "u", O),
    (12, "spool_bytes", "u", O),
    (16, "camera_status", "S", O),
    (17, "awake_ms", "u", O),
    (30, "extra", "md", P),
)

OTA_PROGRESS = (
    (1, "artifact_id", "S", P),
    (2, "version", "S", P),
    (3, "phase", "S", P),
    (4, "blocks_done", "u", P),
    (5, "blocks_total", "u", P),
    (6, "error", "S", P),
)

EVENT = (
    (1, "timestamp_ms", "i", P),
    (2, "session", "u", P),
    (3, "type", "S", P),
    (4, "severity", "u", P),
    (5, "message", "S", P),
    (6, "attributes", "m", P),
    (7, "ota", OTA_PROGRESS, P),
    (8, "uptime_ms", "u", P),
)

# config.proto
CAPTURE_SCHEDULE = (
    (1, "interval_s", "u", O),
    (2, "daily_times_s", "u", R),
    (3, "cron", "S", O),
    (4, "burst_count", "u", O),
    (5, "burst_interval_ms", "u", O),
    (6, "motion_burst_count", "u", O),
)

SLEEP_POLICY = (
    (1, "deep_sleep", "b", O),
    (2, "awake_window_s", "u", O),
    (3, "max_sleep_s", "u", O),
    (4, "low_battery_mv", "u", O),
    (5, "ext0_pin", "u", O),
    (6, "ext0_level", "u", O),
    (7, "ext1_pins", "u", R),
    (8, "ext1_level", "u", O),
    (9, "touch_pin", "u", O),
    (10, "touch_threshold", "u", O),
    (11, "ulp_pin", "u", O),
    (12, "ulp_pulses", "u", O),
    (13, "ulp_period_ms", "u", O),
)

FIRMWARE_TARGET = ((1, "version", "S", P), (2, "artifact_id", "S", P), (3, "sha256", "B", P))

DEVICE_CONFIG = (
    (1, "camera", CAMERA_SETTINGS, P),
    (2, "schedule", CAPTURE_SCHEDULE, P),
    (3, "sleep", SLEEP_POLICY, P),
    (4, "stay_awake_until_ms", "i", O),
    (5, "firmware", FIRMWARE_TARGET, P),
    (6, "telemetry_interval_s", "u", O),
    (7, "max_payload", "u", O),
    (8, "spool_max_frames", "u", O),
    (9, "spool_max_bytes", "u", O),
    (30, "extra", "m", P),
)

BROKER_CREDENTIALS = ((1, "username", "S", P), (2, "iv", "B", P), (3, "ciphertext", "B", P))

DESIRED = (
    (1, "version", "u", P),
    (2, "updated_at_ms", "i", P),
    (3, "config", DEVICE_CONFIG, P),
    (4, "credentials", BROKER_CREDENTIALS, P),
)

REPORTED = (
    (1, "version", "u", P),
    (2, "applied_at_ms", "i", P),
    (3, "config", DEVICE_CONFIG, P),
    (4, "error", "S", P),
    (5, "session", "u", P),
    (6, "identity", "S", P),
)

# command.proto
CAPTURE_NOW = (
    (1, "count", "u", P),
    (2, "interval_ms", "u", P),
    (3, "overrides", CAMERA_SETTINGS, P),
    (4, "metadata", "m", P),
)

OTA_OFFER = (
    (1, "artifact_id", "S", P),
    (2, "version", "S", P),
    (3, "size", "u", P),
    (4, "sha256", "B", P),
    (5, "block_size", "u", P),
    (6, "scheme", "u", P),
    (7, "signature", "B", P),
    (8, "platform", "S", P),
    (9, "rollout_id", "S", P),
)

COMMAND = (
    (1, "id", "S", P),
    (2, "issued_at_ms", "i", P),
    (3, "expires_at_ms", "i", P),
    (4, "group", "S", P),
    (10, "capture", CAPTURE_NOW, P),
    (11, "set_config", ((1, "config", DEVICE_CONFIG, P),), P),
    (12, "reboot", ((1, "agent_only", "b", P), (2, "delay_ms", "u", P)), P),
    (13, "stay_awake", ((1, "seconds", "u", P),), P),
    (14, "reannounce", (), P),
    (15, "ota_offer", OTA_OFFER, P),
)
COMMAND_ACTIONS = ("capture", "set_config", "reboot", "stay_awake", "reannounce", "ota_offer")

ACK = (
    (1, "command_id", "S", P),
    (2, "status", "u", P),
    (3, "detail", "S", P),
    (4, "timestamp_ms", "i", P),
    (5, "session", "u", P),
    (6, "capture_ids", "S", R),
)

# ota.proto
OTA_BLOCK_REQUEST = (
    (1, "artifact_id", "S", P),
    (2, "first_block", "u", P),
    (3, "count", "u", P),
    (4, "wanted", "B", P),
    (5, "session", "u", P),
)

OTA_BLOCK = (
    (1, "artifact_id", "S", P),
    (2, "index", "u", P),
    (3, "total_blocks", "u", P),
    (4, "sha256", "B", P),
    (15, "data", "B", P),
)

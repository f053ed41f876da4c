"""Home Assistant's MQTT discovery schemas for the platforms camfleet announces, transcribed from
HA Core's source (homeassistant/components/mqtt/: schemas.py MQTT_AVAILABILITY_SCHEMA and
MQTT_ENTITY_DEVICE_INFO_SCHEMA, entity.py MQTT_ENTITY_COMMON_SCHEMA, config.py MQTT_BASE_SCHEMA
and MQTT_RO_SCHEMA, camera.py, sensor.py with validate_sensor_state_and_device_class_config,
button.py, util.py valid_subscribe_topic/valid_publish_topic) with voluptuous, the library HA
validates them with. HA itself is too heavy to install for every CI run.

One deliberate difference: HA drops keys it does not know (``extra=REMOVE_EXTRA``); here an
unknown key is an error, because a key HA silently drops is a setting that does nothing.
"""

from __future__ import annotations

from typing import Any

import voluptuous as vol

# --- helpers.config_validation ------------------------------------------------------------------


def string(value: Any) -> str:
    if value is None or isinstance(value, (list, dict)):
        raise vol.Invalid("string value is None or a collection")
    return str(value)


def template(value: Any) -> str:
    if not isinstance(value, str):
        raise vol.Invalid("template value should be a string")
    if value.count("{{") != value.count("}}") or value.count("{%") != value.count("%}"):
        raise vol.Invalid("invalid template (unbalanced delimiters)")
    return value


def positive_int(value: Any) -> int:
    return vol.All(vol.Coerce(int), vol.Range(min=0))(value)  # type: ignore[no-any-return]


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise vol.Invalid("invalid boolean value")


def ensure_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def url(value: Any) -> str:
    text = string(value)
    if not text.startswith(("http://", "https://")):
        raise vol.Invalid("invalid url")
    return text


def entity_category(value: Any) -> str:
    if value not in ("config", "diagnostic"):
        raise vol.Invalid(f"invalid entity category {value!r}")
    return str(value)


# --- mqtt/util.py --------------------------------------------------------------------------------


def valid_topic(value: Any) -> str:
    topic = string(value)
    raw = topic.encode("utf-8")
    if not raw:
        raise vol.Invalid("MQTT topic name/filter must not be empty.")
    if len(raw) > 65535:
        raise vol.Invalid("MQTT topic name/filter must not be longer than 65535 encoded bytes.")
    if "\0" in topic:
        raise vol.Invalid("MQTT topic name/filter must not contain null character.")
    if any(c <= "\u001f" or "\u007f" <= c <= "\u009f" for c in topic):
        raise vol.Invalid("MQTT topic name/filter must not contain control characters.")
    return topic


def valid_subscribe_topic(value: Any) -> str:
    topic = valid_topic(value)
    for i in (i for i, c in enumerate(topic) if c == "+"):
        if (i > 0 and topic[i - 1] != "/") or (i < len(topic) - 1 and topic[i + 1] != "/"):
            raise vol.Invalid("Single-level wildcard must occupy an entire level of the filter")
    index = topic.find("#")
    if index != -1:
        if index != len(topic) - 1:
            raise vol.Invalid("Multi-level wildcard must be the last character")
        if len(topic) > 1 and topic[index - 1] != "/":
            raise vol.Invalid("Multi-level wildcard must be after a topic level separator.")
    return topic


def valid_publish_topic(value: Any) -> str:
    topic = valid_topic(value)
    if "+" in topic or "#" in topic:
        raise vol.Invalid("Wildcards cannot be used in topic names")
    return topic


def valid_printable_string(value: Any) -> str:
    text = string(value)
    if not text.isprintable():
        raise vol.Invalid("Invalid printable string")
    return text


valid_qos_schema = vol.All(vol.Coerce(int), vol.In([0, 1, 2]))

# --- mqtt/schemas.py, config.py, entity.py -------------------------------------------------------


def _has_identifier(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("identifiers") or value.get("connections"):
        return value
    raise vol.Invalid("Device must have at least one identifying value")


DEVICE_INFO = vol.All(
    vol.Schema(
        {
            vol.Optional("identifiers", default=list): vol.All(ensure_list, [string]),
            vol.Optional("connections", default=list): vol.All(
                ensure_list, [vol.All(vol.Length(2), [string])]
            ),
            vol.Optional("manufacturer"): string,
            vol.Optional("model"): string,
            vol.Optional("model_id"): string,
            vol.Optional("name"): string,
            vol.Optional("hw_version"): string,
            vol.Optional("serial_number"): string,
            vol.Optional("sw_version"): string,
            vol.Optional("via_device"): string,
            vol.Optional("suggested_area"): string,
            vol.Optional("configuration_url"): url,
        }
    ),
    _has_identifier,
)

ORIGIN_INFO = vol.Schema(
    {
        vol.Required("name"): string,
        vol.Optional("sw_version"): string,
        vol.Optional("support_url"): url,
    }
)

AVAILABILITY = {
    vol.Exclusive("availability_topic", "availability"): valid_subscribe_topic,
    vol.Optional("availability_template"): template,
    vol.Optional("payload_available", default="online"): string,
    vol.Optional("payload_not_available", default="offline"): string,
    vol.Optional("availability_mode", default="latest"): vol.All(
        string, vol.In(["all", "any", "latest"])
    ),
    vol.Exclusive("availability", "availability"): vol.All(
        ensure_list,
        [
            {
                vol.Required("topic"): valid_subscribe_topic,
                vol.Optional("payload_available", default="online"): string,
                vol.Optional("payload_not_available", default="offline"): string,
                vol.Optional("value_template"): template,
            }
        ],
    ),
}

ENTITY_COMMON = {
    **AVAILABILITY,
    vol.Optional("device"): DEVICE_INFO,
    vol.Optional("origin"): ORIGIN_INFO,
    vol.Optional("enabled_by_default", default=True): boolean,
    vol.Optional("entity_category"): entity_category,
    vol.Optional("entity_picture"): url,
    vol.Optional("icon"): string,
    vol.Optional("json_attributes_topic"): valid_subscribe_topic,
    vol.Optional("json_attributes_template"): template,
    vol.Optional("default_entity_id"): string,
    vol.Optional("object_id"): string,  # deprecated; removed in HA Core 2026.4
    vol.Optional("unique_id"): string,
}

BASE = {
    vol.Optional("encoding", default="utf-8"): string,
    vol.Optional("qos", default=0): valid_qos_schema,
}

CAMERA = vol.Schema(
    {
        **BASE,
        **ENTITY_COMMON,
        vol.Optional("name"): vol.Any(string, None),
        vol.Required("topic"): valid_subscribe_topic,
        vol.Optional("image_encoding"): "b64",
    }
)

SENSOR_DEVICE_CLASSES = {
    # homeassistant/components/sensor/const.py SensorDeviceClass (the ones with unit rules here)
    "battery": {"%"},
    "signal_strength": {"dB", "dBm"},
    "timestamp": set(),
    "date": set(),
    "enum": set(),
    "temperature": {"°C", "°F", "K"},
    "duration": {"d", "h", "min", "s", "ms", "μs"},
    "data_size": {"B", "kB", "MB", "GB", "KiB", "MiB", "GiB"},
}
STATE_CLASSES = ("measurement", "measurement_angle", "total", "total_increasing")


def _sensor_rules(config: dict[str, Any]) -> dict[str, Any]:
    """sensor.py validate_sensor_state_and_device_class_config."""
    device_class = config.get("device_class")
    state_class = config.get("state_class")
    unit = config.get("unit_of_measurement")
    if state_class and "options" in config:
        raise vol.Invalid("options cannot be set with state_class")
    if "options" in config and device_class not in (None, "enum"):
        raise vol.Invalid("options are only allowed with device_class enum")
    if device_class == "enum" and (state_class or unit):
        raise vol.Invalid("device_class enum takes neither state_class nor a unit")
    if device_class in ("timestamp", "date") and (state_class or unit):
        raise vol.Invalid(f"device_class {device_class} takes neither state_class nor a unit")
    if device_class is not None and unit is not None:
        allowed = SENSOR_DEVICE_CLASSES[device_class]
        if unit not in allowed:
            raise vol.Invalid(f"unit {unit!r} is not valid for device_class {device_class}")
    return config


SENSOR = vol.All(
    vol.Schema(
        {
            **BASE,
            **ENTITY_COMMON,
            vol.Required("state_topic"): valid_subscribe_topic,
            vol.Optional("value_template"): template,
            vol.Optional("device_class"): vol.Any(vol.In(list(SENSOR_DEVICE_CLASSES)), None),
            vol.Optional("expire_after"): positive_int,
            vol.Optional("force_update", default=False): boolean,
            vol.Optional("last_reset_value_template"): template,
            vol.Optional("name"): vol.Any(string, None),
            vol.Optional("options"): ensure_list,
            vol.Optional("suggested_display_precision"): positive_int,
            vol.Optional("state_class"): vol.Any(vol.In(list(STATE_CLASSES)), None),
            vol.Optional("unit_of_measurement"): vol.Any(string, None),
        }
    ),
    _sensor_rules,
)

BUTTON = vol.Schema(
    {
        **BASE,
        **ENTITY_COMMON,
        vol.Optional("command_template"): template,
        vol.Required("command_topic"): valid_publish_topic,
        vol.Optional("device_class"): vol.Any(vol.In(["identify", "restart", "update"]), None),
        vol.Optional("name", default="MQTT Button"): vol.Any(valid_printable_string, None),
        vol.Optional("payload_press", default="PRESS"): string,
        vol.Optional("retain", default=False): boolean,
    }
)

SCHEMAS = {"camera": CAMERA, "sensor": SENSOR, "button": BUTTON}


def validate(component: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The config HA would build from a discovery payload (raises vol.Invalid)."""
    config: dict[str, Any] = SCHEMAS[component](payload)
    default_entity_id = config.get("default_entity_id")
    if default_entity_id is not None and not default_entity_id.startswith(f"{component}."):
        raise vol.Invalid(f"default_entity_id {default_entity_id!r} is not a {component} entity")
    return config

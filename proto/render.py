"""Turn decoded messages into JSON-friendly dicts for people and scripts.

Image and block data are summarised (length), digests are shown as hex, enums by name: the
output of ``camfleet proto decode/watch`` and of any tool that prints messages.
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

_DIGEST_FIELDS = {"sha256", "signature"}
_DATA_FIELDS = {"data"}


def to_dict(message: Message) -> dict[str, Any]:
    """A dict of the set fields of ``message``; ``data`` becomes its length, digests hex."""
    raw = MessageToDict(message, preserving_proto_field_name=True)
    tidy: dict[str, Any] = _tidy(raw)
    return tidy


def _tidy(value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _DATA_FIELDS and isinstance(item, str):
                out[key + "_bytes"] = len(base64.b64decode(item))
            elif key in _DIGEST_FIELDS and isinstance(item, str):
                out[key] = base64.b64decode(item).hex()
            else:
                out[key] = _tidy(item)
        return out
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value

"""The controller signs what a device acts on, at the one place everything is published.

``Signer.wrap(publish)`` returns a publish function that appends the device's signature
(camfleet.proto.signing) to receipts, commands and desired config addressed to a device with a
key in the registry (controller/device_keys.py); other topics, and devices without a key
(development setups), pass unchanged. Commands are stored unsigned and signed when
(re)published, so a command queued before a re-enrolment goes out under the device's new key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from camfleet.controller.device_keys import DeviceKeys
from camfleet.proto import signing, topics
from camfleet.proto.errors import ContractError


class Signer:
    def __init__(self, keys: DeviceKeys, root: str) -> None:
        self.keys = keys
        self.root = root
        self._prefix = f"{root}/{topics.VERSION}/"

    def sign(self, topic: str, payload: bytes) -> bytes:
        if not payload:  # clearing a retained topic
            return payload
        if not topic.startswith(self._prefix):
            return payload  # Home Assistant and other integration topics (no exception made)
        try:
            t = topics.parse(topic, self.root)
        except ContractError:
            return payload
        if t.device_id is None or t.kind not in signing.SIGNED_KINDS:
            return payload
        key = self.keys.get(t.device_id)
        return payload if key is None else signing.sign(key, t.kind, t.device_id, payload)

    def wrap(self, publish: Callable[..., Any]) -> Callable[..., Any]:
        def signed_publish(topic: str, payload: bytes, *args: Any, **kwargs: Any) -> Any:
            return publish(topic, self.sign(topic, payload), *args, **kwargs)

        return signed_publish

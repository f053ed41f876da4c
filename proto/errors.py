"""The one error type of the wire contract.

Every way a payload or topic can be wrong raises :class:`ContractError` with a machine-readable
:class:`Reason` (used as a metrics label and for "logged once per reason") and a human detail.
Nothing else escapes the codec, the topic parser or the reassembler for bad input.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """Why a topic or payload was refused."""

    BAD_TOPIC = "bad_topic"  # not a camfleet v1 topic, or an invalid id in it
    BAD_ID = "bad_id"  # an invalid device id / group name given to a builder
    BAD_PROTOBUF = "bad_protobuf"  # the payload is not a parseable protobuf message
    WRONG_KIND = "wrong_kind"  # parses, but is not the message this topic carries
    INVALID = "invalid"  # the right message, but it breaks a rule of its kind
    OVERSIZE = "oversize"  # payload larger than the configured limit
    CHECKSUM_MISMATCH = "checksum_mismatch"  # size or SHA-256 does not match the data
    CHUNK_MISMATCH = "chunk_mismatch"  # a chunk disagrees with the other chunks of its frame
    EMPTY = "empty"  # zero-byte payload: on a retained topic, MQTT's way to clear the message


class ContractError(ValueError):
    """A topic or payload that breaks the camfleet v1 contract.

    ``reason`` is a :class:`Reason`; ``detail`` says what exactly, in one line.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

"""camfleet wire contract v1: generated protobuf messages, topic scheme, codec and chunking.

The .proto files in proto/camfleet/v1/ are the source of truth; ``camfleet.proto.v1`` holds the
generated modules (regenerate with ``scripts/proto``). See docs/protocol.md.
"""

from camfleet.proto.errors import ContractError, Reason

__all__ = ["ContractError", "Reason"]

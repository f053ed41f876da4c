"""Run under MicroPython: decode payloads with the node's pb.py and encode them back.

argv[1]: a JSON file [[schema name, hex payload], ...]; prints one JSON line per payload:
{"decoded": <dict, bytes as {"hex": ...}>, "encoded": <hex of the re-encoding>}.
"""

import binascii
import json
import sys

import pb
import schemas


def plain(v):
    if isinstance(v, bytes):
        return {"hex": binascii.hexlify(v).decode()}
    if isinstance(v, dict):
        return {k: plain(v[k]) for k in v}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


with open(sys.argv[1]) as f:
    cases = json.load(f)
for name, payload in cases:
    schema = getattr(schemas, name)
    msg = pb.decode(schema, binascii.unhexlify(payload))
    out = pb.encode(schema, msg)
    print(json.dumps({"decoded": plain(msg), "encoded": binascii.hexlify(out).decode()}))

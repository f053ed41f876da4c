"""Publishing a spooled frame: one Frame message, or FrameChunks when it exceeds max payload.

The data is streamed from the spool file through the MQTT client (``(file, length)`` parts), so
a frame is never concatenated with its header nor held twice in RAM. The small header is
re-encoded at publish time (``historical`` set for a replay), split around the data so the bytes
on the wire are exactly what the generated classes write: fields 1..14, data (15), uptime (16),
incarnation (17).
"""

import pb
from schemas import FRAME_CHUNK_HEADER, FRAME_HEADER

_DATA_FIELD = 15
_BEFORE_DATA = tuple(f for f in FRAME_HEADER if f[0] < _DATA_FIELD)  # capture_id .. command_id
_AFTER_DATA = tuple(f for f in FRAME_HEADER if f[0] > _DATA_FIELD)  # uptime_ms, incarnation
_CHUNK_IDS = FRAME_CHUNK_HEADER[:7]  # capture_id .. sha256
_CHUNK_AFTER_HEADER = FRAME_CHUNK_HEADER[8:]  # offset, incarnation
# Room kept for the chunk's own fields (ids, counters, sha256, offset, incarnation, data key)
# besides the frame header that chunk 0 carries.
_CHUNK_OVERHEAD = 180


def publish(client, topics, spool, entry, max_payload, historical):
    """Publish spool entry (session, seq, path, size); returns the number of MQTT messages."""
    f, stored, dlen = spool.open(entry[2])
    try:
        info = pb.decode(FRAME_HEADER, stored)
        if historical:
            info["historical"] = True
        head = pb.encode(_BEFORE_DATA, info)
        key = bytearray()
        pb.put_len_header(key, _DATA_FIELD, dlen)
        tail = pb.encode(_AFTER_DATA, info)
        if len(head) + len(key) + dlen + len(tail) <= max_payload:
            client.publish(topics["frame"], (head, key, (f, dlen), tail), qos=1)
            return 1
        return _publish_chunks(client, topics["chunk"], f, info, dlen, max_payload)
    finally:
        f.close()


def _publish_chunks(client, topic, f, info, dlen, max_payload):
    header = pb.encode(FRAME_HEADER, info)  # chunk 0 carries the whole Frame but its data
    room = max_payload - len(header) - _CHUNK_OVERHEAD
    if room < 512:
        raise ValueError("max_payload too small for this frame's header")
    count = (dlen + room - 1) // room
    ids = {
        "capture_id": info.get("capture_id", ""),
        "session": info.get("session", 0),
        "seq": info.get("seq", 0),
        "count": count,
        "total_size": dlen,
        "sha256": info.get("sha256", b""),
    }
    after = {"offset": 0, "incarnation": info.get("incarnation", b"")}
    offset = 0
    for index in range(count):
        n = min(room, dlen - offset)
        ids["index"] = index
        buf = pb.encode(_CHUNK_IDS, ids)
        if index == 0:
            pb.put_len_header(buf, 8, len(header))
            buf.extend(header)
        after["offset"] = offset
        pb.encode(_CHUNK_AFTER_HEADER, after, buf)
        pb.put_len_header(buf, _DATA_FIELD, n)
        client.publish(topic, (buf, (f, n)), qos=1)
        offset += n
    return count

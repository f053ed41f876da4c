"""Publishing a spooled frame: one Frame message, or FrameChunks when it exceeds max payload.

The data is streamed from the spool file through the MQTT client (``(file, length)`` parts), so
a frame is never concatenated with its header nor held twice in RAM. A replay sets
``historical`` by appending field 10 to the stored header: protobuf readers merge fields in any
order, so the stored bytes need no rewrite.
"""

import pb
from schemas import FRAME_CHUNK_HEADER, FRAME_HEADER

_HISTORICAL = b"\x50\x01"  # field 10 (historical), varint true
_DATA_FIELD = 15
_CHUNK_IDS = FRAME_CHUNK_HEADER[:7]  # capture_id .. sha256
_CHUNK_OFFSET = FRAME_CHUNK_HEADER[8:]  # offset
# Room kept for the chunk's own fields (ids, counters, sha256, offset, data key) besides the
# frame header that chunk 0 carries.
_CHUNK_OVERHEAD = 160


def frame_size(header_len, data_len, historical):
    n = header_len + (2 if historical else 0)
    return n + 1 + pb.varint_size(data_len) + data_len


def publish(client, topics, spool, entry, max_payload, historical):
    """Publish spool entry (session, seq, path, size); returns the number of MQTT messages."""
    f, header, dlen = spool.open(entry[2])
    try:
        if historical:
            header = header + _HISTORICAL
        if frame_size(len(header), dlen, False) <= max_payload:
            key = bytearray()
            pb.put_len_header(key, _DATA_FIELD, dlen)
            client.publish(topics["frame"], (header, key, (f, dlen)), qos=1)
            return 1
        return _publish_chunks(client, topics["chunk"], f, header, dlen, max_payload)
    finally:
        f.close()


def _publish_chunks(client, topic, f, header, dlen, max_payload):
    info = pb.decode(FRAME_HEADER, header)
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
    offset = 0
    for index in range(count):
        n = min(room, dlen - offset)
        ids["index"] = index
        buf = pb.encode(_CHUNK_IDS, ids)
        if index == 0:
            pb.put_len_header(buf, 8, len(header))
            buf.extend(header)
        pb.encode(_CHUNK_OFFSET, {"offset": offset}, buf)
        pb.put_len_header(buf, _DATA_FIELD, n)
        client.publish(topic, (buf, (f, n)), qos=1)
        offset += n
    return count

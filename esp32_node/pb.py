"""Minimal protobuf (proto3) encoder/decoder for the camfleet v1 messages the node uses.

Messages are plain dicts keyed by field name; a schema is a tuple of fields
``(number, name, type, label)`` in field-number order, so the encoder writes fields in the same
order as the generated classes (deterministic map order = sorted keys), byte for byte.

Types: ``u`` uint32/uint64/enum, ``i`` int64, ``s`` sint32 (zigzag), ``b`` bool, ``f`` float,
``d`` double, ``S`` string, ``B`` bytes, a tuple = a nested message schema,
``m`` map<string,string>, ``md`` map<string,double>. Labels: ``0`` proto3 implicit (zero values
are not written), ``1`` ``optional`` (written when the key is present), ``2`` repeated (scalars
packed, as proto3 does).

Large byte fields (frame data) are never passed through here: the node encodes the header and
streams the data itself (see frames.py), so a frame is never copied into a message buffer.
"""

import struct

PLAIN = 0
OPTIONAL = 1
REPEATED = 2

_VARINT = ("u", "i", "s", "b")


def put_varint(buf, v):
    if v < 0:
        v += 1 << 64
    while v > 0x7F:
        buf.append((v & 0x7F) | 0x80)
        v >>= 7
    buf.append(v)


def varint_size(v):
    n = 1
    while v > 0x7F:
        v >>= 7
        n += 1
    return n


def put_key(buf, num, wire):
    put_varint(buf, (num << 3) | wire)


def put_len_header(buf, num, length):
    """Key + length of a length-delimited field whose bytes the caller writes separately."""
    put_key(buf, num, 2)
    put_varint(buf, length)


def _scalar_raw(buf, typ, v):
    if typ == "s":
        put_varint(buf, (v << 1) ^ (v >> 63))
    elif typ == "b":
        buf.append(1 if v else 0)
    elif typ == "f":
        buf.extend(struct.pack("<f", v))
    elif typ == "d":
        buf.extend(struct.pack("<d", v))
    else:
        put_varint(buf, int(v))


def _wire(typ):
    if typ in _VARINT:
        return 0
    if typ == "f":
        return 5
    if typ == "d":
        return 1
    return 2


def _put_field(buf, num, typ, v):
    if isinstance(typ, tuple):
        sub = encode(typ, v)
        put_len_header(buf, num, len(sub))
        buf.extend(sub)
    elif typ == "S":
        raw = v.encode() if isinstance(v, str) else v
        put_len_header(buf, num, len(raw))
        buf.extend(raw)
    elif typ == "B":
        put_len_header(buf, num, len(v))
        buf.extend(v)
    elif typ == "m" or typ == "md":
        for k in sorted(v):
            entry = bytearray()
            _put_field(entry, 1, "S", k)
            if typ == "m":
                _put_field(entry, 2, "S", v[k])
            else:
                put_key(entry, 2, 1)
                entry.extend(struct.pack("<d", v[k]))
            put_len_header(buf, num, len(entry))
            buf.extend(entry)
    else:
        put_key(buf, num, _wire(typ))
        _scalar_raw(buf, typ, v)


def _is_default(typ, v):
    if isinstance(typ, tuple):
        return False  # a set sub-message is written even when empty, like the generated code
    if typ in ("S", "B", "m", "md"):
        return len(v) == 0
    return not v


def encode(schema, msg, buf=None):
    """Encode dict ``msg`` with ``schema``; returns a bytearray (``buf`` when given)."""
    if buf is None:
        buf = bytearray()
    for num, name, typ, label in schema:
        if name not in msg:
            continue
        v = msg[name]
        if v is None:
            continue
        if label == REPEATED:
            if not v:
                continue
            if typ in _VARINT or typ in ("f", "d"):
                packed = bytearray()
                for item in v:
                    _scalar_raw(packed, typ, item)
                put_len_header(buf, num, len(packed))
                buf.extend(packed)
            else:
                for item in v:
                    _put_field(buf, num, typ, item)
        elif label == PLAIN and _is_default(typ, v):
            continue
        else:
            _put_field(buf, num, typ, v)
    return buf


class DecodeError(ValueError):
    pass


def _get_varint(mv, pos, end):
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        b = mv[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def _convert(typ, v):
    if typ == "i":
        return v - (1 << 64) if v >= 1 << 63 else v
    if typ == "s":
        return (v >> 1) ^ -(v & 1)
    if typ == "b":
        return v != 0
    return v


def _decode_map(typ, mv, start, end):
    key = ""
    val = "" if typ == "m" else 0.0
    pos = start
    while pos < end:
        tag, pos = _get_varint(mv, pos, end)
        num = tag >> 3
        wire = tag & 7
        if wire == 2:
            n, pos = _get_varint(mv, pos, end)
            raw = bytes(mv[pos : pos + n])
            pos += n
            if num == 1:
                key = raw.decode()
            elif num == 2:
                val = raw.decode()
        elif wire == 1:
            if num == 2:
                val = struct.unpack("<d", bytes(mv[pos : pos + 8]))[0]
            pos += 8
        else:
            pos = _skip(mv, pos, end, wire)
    return key, val


def _skip(mv, pos, end, wire):
    if wire == 0:
        return _get_varint(mv, pos, end)[1]
    if wire == 1:
        pos += 8
    elif wire == 5:
        pos += 4
    elif wire == 2:
        n, pos = _get_varint(mv, pos, end)
        pos += n
    else:
        raise DecodeError("unsupported wire type %d" % wire)
    if pos > end:
        raise DecodeError("truncated field")
    return pos


def decode(schema, data, start=0, end=None):
    """Decode ``data`` (bytes/bytearray/memoryview) into a dict; unknown fields are skipped.

    Absent fields are absent keys (read them with ``msg.get(name, default)``); repeated fields
    accept packed and unpacked encodings.
    """
    mv = memoryview(data)
    if end is None:
        end = len(mv)
    fields = {}
    for f in schema:
        fields[f[0]] = f
    msg = {}  # type: dict
    pos = start
    while pos < end:
        tag, pos = _get_varint(mv, pos, end)
        num = tag >> 3
        wire = tag & 7
        if num == 0:
            raise DecodeError("field number 0")
        f = fields.get(num)
        if f is None:
            pos = _skip(mv, pos, end, wire)
            continue
        _, name, typ, label = f
        if wire == 0:
            v, pos = _get_varint(mv, pos, end)
            v = _convert(typ, v)
        elif wire == 5:
            if pos + 4 > end:
                raise DecodeError("truncated fixed32")
            v = struct.unpack("<f", bytes(mv[pos : pos + 4]))[0]
            pos += 4
        elif wire == 1:
            if pos + 8 > end:
                raise DecodeError("truncated fixed64")
            v = struct.unpack("<d", bytes(mv[pos : pos + 8]))[0]
            pos += 8
        elif wire == 2:
            n, pos = _get_varint(mv, pos, end)
            stop = pos + n
            if stop > end:
                raise DecodeError("truncated length-delimited field")
            if isinstance(typ, tuple):
                v = decode(typ, mv, pos, stop)
            elif typ == "S":
                v = str(bytes(mv[pos:stop]), "utf-8")
            elif typ == "B":
                v = bytes(mv[pos:stop])
            elif typ == "m" or typ == "md":
                k, val = _decode_map(typ, mv, pos, stop)
                msg.setdefault(name, {})[k] = val
                pos = stop
                continue
            elif label == REPEATED:
                # packed scalars
                items = msg.setdefault(name, [])
                p = pos
                while p < stop:
                    if typ == "f":
                        items.append(struct.unpack("<f", bytes(mv[p : p + 4]))[0])
                        p += 4
                    elif typ == "d":
                        items.append(struct.unpack("<d", bytes(mv[p : p + 8]))[0])
                        p += 8
                    else:
                        x, p = _get_varint(mv, p, stop)
                        items.append(_convert(typ, x))
                pos = stop
                continue
            else:
                raise DecodeError("field %d: unexpected length-delimited value" % num)
            pos = stop
        else:
            raise DecodeError("unsupported wire type %d" % wire)
        if label == REPEATED:
            msg.setdefault(name, []).append(v)
        else:
            msg[name] = v
    if pos != end:
        raise DecodeError("message overruns its length")
    return msg

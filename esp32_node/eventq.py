"""Events that could not be sent while offline wait in a small flash file (``events.q``):
length-prefixed Event messages, newest kept, sent after the next birth."""

import pb
import schemas as S

FILE = "events.q"
MAX = 16


def load():
    try:
        with open(FILE, "rb") as f:
            raw = f.read()
    except OSError:
        return []
    out = []
    pos = 0
    try:
        while pos + 2 <= len(raw):
            n = raw[pos] | raw[pos + 1] << 8
            out.append(pb.decode(S.EVENT, raw[pos + 2 : pos + 2 + n]))
            pos += 2 + n
    except ValueError:
        pass  # a torn write: keep what decoded
    return out


def save(events):
    """Events that could not be sent (offline) wait in a small file, newest kept."""
    del events[:-MAX]
    with open(FILE, "wb") as f:
        for ev in events:
            raw = pb.encode(S.EVENT, ev)
            f.write(bytes((len(raw) & 0xFF, len(raw) >> 8)))
            f.write(raw)

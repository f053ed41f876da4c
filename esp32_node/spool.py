"""Flash spool: every frame is written here before it is published, and deleted only when a
controller receipt covers its (incarnation, session, seq) and the frame was sent
(docs/protocol.md, "Durability: receipts and spools").

One file per frame, ``spool/<session>-<seq>.f``: a 12-byte header (magic, header length, data
length), the encoded Frame header (every field but data) and the JPEG. Files are written under a
temporary name and renamed, so a power cut leaves either the whole frame or nothing. Bounded by
count and bytes; ``add`` drops the oldest frames to make room and returns them for an event.
"""

import os
import struct

_MAGIC = b"CFS1"
_HDR = "<4sII"
_HDR_LEN = 12
DIR = "spool"


def _ensure_dir():
    try:
        os.mkdir(DIR)
    except OSError:
        pass


class Spool:
    def __init__(self, max_frames=16, max_bytes=384 * 1024):
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        _ensure_dir()
        for name in os.listdir(DIR):
            if not name.endswith(".f"):
                os.remove(DIR + "/" + name)  # a write cut short by a reset

    @staticmethod
    def _name(session, seq):
        return "%s/%010d-%010d.f" % (DIR, session, seq)

    def entries(self):
        """[(session, seq, path, size)] oldest first."""
        out = []
        for name in sorted(os.listdir(DIR)):
            if not name.endswith(".f"):
                continue
            session, seq = name[:-2].split("-")
            path = DIR + "/" + name
            out.append((int(session), int(seq), path, os.stat(path)[6]))
        return out

    def depth(self):
        return len(self.entries())

    def total_bytes(self):
        n = 0
        for e in self.entries():
            n += e[3]
        return n

    def add(self, session, seq, header, data):
        """Store one frame; returns the (session, seq) of frames dropped to make room."""
        size = _HDR_LEN + len(header) + len(data)
        dropped = []
        entries = self.entries()
        total = 0
        for e in entries:
            total += e[3]
        while entries and (len(entries) + 1 > self.max_frames or total + size > self.max_bytes):
            old = entries.pop(0)
            os.remove(old[2])
            total -= old[3]
            dropped.append((old[0], old[1]))
        path = self._name(session, seq)
        tmp = path[:-2] + ".tmp"
        with open(tmp, "wb") as f:
            f.write(struct.pack(_HDR, _MAGIC, len(header), len(data)))
            f.write(header)
            f.write(data)
        os.rename(tmp, path)
        return dropped

    def open(self, path):
        """(file positioned at the data, header bytes, data length); the caller closes it."""
        size = os.stat(path)[6]
        f = open(path, "rb")
        head = f.read(_HDR_LEN)
        magic, hlen, dlen = struct.unpack(_HDR, head) if len(head) == _HDR_LEN else (b"", 0, 0)
        if magic != _MAGIC or size != _HDR_LEN + hlen + dlen:
            f.close()
            raise ValueError("damaged spool file " + path)
        return f, f.read(hlen), dlen

    def remove(self, session, seq):
        try:
            os.remove(self._name(session, seq))
            return True
        except OSError:
            return False

    def apply_receipt(self, ranges, incarnation, since, sent):
        """Delete the spooled frames that a receipt's SeqRanges cover AND that were published
        this wake (``sent``: [(session, seq)]); returns how many.

        A frame of this incarnation (session >= ``since``) is covered only by a range naming
        ``incarnation``, so a receipt for the (session, seq) of an earlier incarnation (still
        queued in the broker after a wipe) cannot delete it. Loops over what was sent, so any
        receipt costs at most len(sent) x len(ranges) comparisons and no allocation.
        """
        n = 0
        for key in sent:
            session = key[0]
            seq = key[1]
            for r in ranges:
                if session >= since and r.get("incarnation", b"") != incarnation:
                    continue
                if r.get("session", 0) == session and r.get("first_seq", 0) <= seq <= r.get(
                    "last_seq", 0
                ):
                    if self.remove(session, seq):
                        n += 1
                    break
        return n

    def max_session(self):
        """Highest session with a spooled frame (0 when empty)."""
        e = self.entries()
        return e[-1][0] if e else 0

    def has(self, session, seq):
        try:
            os.stat(self._name(session, seq))
            return True
        except OSError:
            return False

"""Run under MicroPython with esp32_node on the path: the node's flash spool on a real LittleFS v2
(the ESP32 port's filesystem, here over a RAM block device that logs every program and erase).

The block device's state is replayed after every one of its operations, as a power cut at that
moment would leave it: each state is mounted afresh (nothing cached) and opened as the next boot
would (``Spool()`` removes an interrupted write). Prints one JSON line: for each cut, "none" (the
new frame absent, the earlier frame intact), "whole" (the new frame complete), or what is wrong.
The last state is the flash when ``add`` returned: the frame must be durable by then.
"""

import json
import os

import spool

BLOCK = 4096
BLOCKS = 64


class LoggedFlash:
    """A block device (extended interface, as LittleFS uses it) that logs what it changes."""

    def __init__(self, data=None):
        self.data = bytearray(data) if data is not None else bytearray(b"\xff" * BLOCK * BLOCKS)
        self.log = []

    def readblocks(self, block, buf, offset=0):
        start = block * BLOCK + offset
        buf[:] = self.data[start : start + len(buf)]

    def writeblocks(self, block, buf, offset=0):
        start = block * BLOCK + offset
        self.log.append((start, bytes(buf)))
        self.data[start : start + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return BLOCKS
        if op == 5:  # block size
            return BLOCK
        if op == 6:  # erase
            self.log.append((arg * BLOCK, b"\xff" * BLOCK))
            self.data[arg * BLOCK : (arg + 1) * BLOCK] = b"\xff" * BLOCK
        return 0


def frame_state(image, header, data):
    """Mount ``image`` as a fresh boot would and say what the spool holds."""
    dev = LoggedFlash(image)
    try:
        os.mount(os.VfsLfs2(dev), "/cut")
    except OSError as e:
        return "unmountable: %s" % e
    try:
        os.chdir("/cut")
        sp = spool.Spool()  # what the next wake does first
        leftovers = [n for n in os.listdir(spool.DIR) if not n.endswith(".f")]
        if leftovers:
            return "interrupted write left behind: %s" % leftovers
        keys = [(e[0], e[1]) for e in sp.entries()]
        if (1, 1) not in keys:
            return "earlier frame lost: %s" % keys
        if (1, 2) not in keys:
            return "none" if keys == [(1, 1)] else "strays: %s" % keys
        f, head, dlen = sp.open(spool.DIR + "/0000000001-0000000002.f")
        body = f.read(dlen)
        f.close()
        if head != header or body != data:
            return "damaged"
        return "whole"
    except Exception as e:
        return "error: %r" % e
    finally:
        os.chdir("/")
        os.umount("/cut")


def replay(base, log, header, data):
    states = []
    image = bytearray(base)
    states.append(frame_state(image, header, data))
    for start, chunk in log:
        image[start : start + len(chunk)] = chunk
        states.append(frame_state(image, header, data))
    return states


flash = LoggedFlash()
os.VfsLfs2.mkfs(flash)
os.mount(os.VfsLfs2(flash), "/flash")
os.chdir("/flash")
sp = spool.Spool()
sp.add(1, 1, b"earlier header", b"E" * 3000)
base = bytes(flash.data)
flash.log = []
header = b"H" * 60
data = bytes(range(256)) * 40  # 10 KB: several blocks
sp.add(1, 2, header, data)
add_log = flash.log
flash.log = []
after_add = bytes(flash.data)
deleted = sp.apply_receipt(
    [{"session": 1, "first_seq": 2, "last_seq": 2, "incarnation": b"inc"}], b"inc", 1, [(1, 2)]
)
receipt_log = flash.log
flash.log = []
# the bounds: by bytes (each file is 12 + 10 + 1000 bytes), then by count
sp.apply_receipt(
    [{"session": 1, "first_seq": 1, "last_seq": 1, "incarnation": b"inc"}], b"inc", 1, [(1, 1)]
)
sp.max_bytes, sp.max_frames = 3 * 1022, 10
drops = [sp.add(2, seq, b"h" * 10, b"d" * 1000) for seq in range(1, 6)]
bounded = [sp.depth(), sp.total_bytes()]
sp.max_bytes, sp.max_frames = 10**6, 2
drops.append(sp.add(2, 6, b"h" * 10, b"d" * 1000))
bounded += [sp.depth(), [(e[0], e[1]) for e in sp.entries()], sp.has(2, 6), sp.has(2, 1)]
# the highest spooled session (the floor of the next session after RTC memory is lost)
sp.max_frames = 10
sp.add(3, 9, b"h", b"d")
sp.add(5, 2, b"h", b"d")
sessions = [sp.max_session()]
for e in sp.entries():
    sp.remove(e[0], e[1])
sessions.append(sp.max_session())
os.chdir("/")
os.umount("/flash")
result = {
    "add": replay(base, add_log, header, data),
    "receipt": replay(after_add, receipt_log, header, data),
    "deleted": deleted,
    "drops": drops,
    "bounded": bounded,
    "sessions": sessions,
}
print("RESULT " + json.dumps(result))

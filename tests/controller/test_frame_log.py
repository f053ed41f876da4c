"""The frame log keeps whole records, ignores torn tails and foreign records, is replayed only
when its process is gone, and the store serves a frame until its file exists."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from camfleet.controller.frames.log import FrameLog, read_segment
from camfleet.controller.frames.store import LocalFrameStore, frame_key


def test_records_round_trip_and_a_torn_tail_ends_the_replay(tmp_path: Path) -> None:
    log = FrameLog(tmp_path / "log", segment_bytes=1 << 20)
    first = [("frames/a/2026-01-01/000000_1-1.jpg", b"x" * 5000), ("frames/a/d/k_1-2.jpg", b"y")]
    segment, offsets = log.append(first)
    assert log.read(segment, offsets[0], 5000) == b"x" * 5000
    log.append([("frames/a/2026-01-01/000000_1-3.jpg", b"z" * 70_000)])
    path = log.path(segment)
    records = list(read_segment(path))
    assert records == [*first, ("frames/a/2026-01-01/000000_1-3.jpg", b"z" * 70_000)]
    log.close()
    # A crash in the middle of the last record: the complete ones before it are all there is.
    blob = path.read_bytes()
    last = blob.index(b"z" * 100)
    path.write_bytes(blob[: last + 10])
    assert list(read_segment(path)) == first
    # A segment file renamed to another number is not replayed as that segment.
    os.rename(path, log.path(segment + 7))
    assert list(read_segment(log.path(segment + 7))) == []


_CRASHING_WRITER = """
import sys
from pathlib import Path
from camfleet.controller.frames.store import LocalFrameStore, frame_key
store = LocalFrameStore(Path(sys.argv[1]), segment_bytes=64 * 1024)
for seq in range(6):
    key = frame_key("cam", 1, seq, 1_700_000_000_000 + seq, "image/jpeg")
    store.put_batch([(key, bytes([seq]) * 40_000)])
store.committed()
import os
os._exit(0)  # no cleanup: what kill -9 leaves (the kernel drops the lock)
"""


def test_a_dead_process_log_is_replayed_for_indexed_frames_with_matching_bytes(
    tmp_path: Path,
) -> None:
    live = LocalFrameStore(tmp_path)  # another controller on the same data directory
    subprocess.run([sys.executable, "-c", _CRASHING_WRITER, str(tmp_path)], check=True)
    keys = [frame_key("cam", 1, seq, 1_700_000_000_000 + seq, "image/jpeg") for seq in range(6)]
    blobs = [bytes([seq]) * 40_000 for seq in range(6)]
    assert len(list((tmp_path / "frame-log").glob("*/*.seg"))) >= 2  # rotated
    # The index has frames 0..3; frame 3's row has another checksum (a torn record).
    indexed = {k: hashlib.sha256(b).hexdigest() for k, b in zip(keys[:3], blobs, strict=False)}
    indexed[keys[3]] = "0" * 64
    again = LocalFrameStore(tmp_path)
    assert again.recover(lambda ks: {k: indexed[k] for k in ks if k in indexed}) == 3
    on_disk = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "frames").rglob("*"))
    assert [k for k in on_disk if k.endswith(".jpg")] == sorted(keys[:3])
    assert all((tmp_path / k).read_bytes() == b for k, b in zip(keys[:3], blobs, strict=False))
    # The dead process's log is gone; the live one's and the new one's are untouched.
    assert sorted(p.name for p in (tmp_path / "frame-log").iterdir()) == sorted(
        [live.log.dir.name, again.log.dir.name]
    )
    live.close()
    again.close()
    assert list((tmp_path / "frame-log").iterdir()) == []


def test_committed_frames_are_served_then_written_and_deletes_win(tmp_path: Path) -> None:
    store = LocalFrameStore(tmp_path)
    kept, dropped = (frame_key("cam", 2, s, 1_700_000_000_000, "image/jpeg") for s in (1, 2))
    store.put_batch([(kept, b"kept"), (dropped, b"dropped")])
    store.committed()
    assert store.get(kept) == b"kept"
    store.delete(dropped)  # retention may pick a frame whose file is not written yet
    assert store.flush(10)
    assert (tmp_path / kept).read_bytes() == b"kept"
    assert not (tmp_path / dropped).exists()
    store.close()
    assert list((tmp_path / "frame-log").iterdir()) == []

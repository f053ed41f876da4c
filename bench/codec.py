"""Cost of camfleet's codec and chunking next to bare protobuf, measured in the same run.

    .venv/bin/python bench/codec.py [--size 51200] [--n 2000]

Baselines: `Frame.FromString` (bare parse) for decode, `SerializeToString` for encode, and one
`bytes` copy of the image for chunking. The ratios say what the contract checks (SHA-256 of the
image, unknown-field scan, per-kind rules) cost on top of plain protobuf.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections.abc import Callable

from camfleet.proto import codec
from camfleet.proto.chunking import Reassembler, split_frame
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import frame_pb2


def per_op(fn: Callable[[], object], n: int) -> float:
    """Best of 5 runs of n calls, in microseconds per call (best-of filters a noisy machine)."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=50 * 1024, help="image bytes (default 50 KiB)")
    parser.add_argument("--n", type=int, default=2000, help="calls per timing run")
    parser.add_argument("--big", type=int, default=1_500_000, help="bytes of the chunked frame")
    args = parser.parse_args()

    frame = codec.make_frame(os.urandom(args.size), session=1, seq=1, metadata={"lux": "300"})
    payload = codec.encode(frame)
    rows = [
        (
            "decode: bare Frame.FromString",
            per_op(lambda: frame_pb2.Frame.FromString(payload), args.n),
        ),
        (
            "decode: codec.decode (checks)",
            per_op(lambda: codec.decode(Kind.FRAME, payload), args.n),
        ),
        (
            "  of which SHA-256 of the image",
            per_op(lambda: hashlib.sha256(frame.data).digest(), args.n),
        ),
        ("encode: SerializeToString", per_op(frame.SerializeToString, args.n)),
        ("encode: codec.encode", per_op(lambda: codec.encode(frame), args.n)),
    ]
    big = codec.make_frame(os.urandom(args.big), session=1, seq=2)
    wire = [codec.encode(c) for c in split_frame(big)]

    def reassemble() -> None:
        r = Reassembler()
        for w in wire:
            r.add("cam", codec.decode(Kind.CHUNK, w).message)  # type: ignore[arg-type]

    n_big = max(args.n // 100, 10)
    copy_us = per_op(lambda: bytes(bytearray(big.data)), n_big)
    split_us = per_op(lambda: [codec.encode(c) for c in split_frame(big)], n_big)
    join_us = per_op(reassemble, n_big)

    print(f"frame of {args.size} bytes, {len(payload)} bytes encoded")
    for name, us in rows:
        print(f"  {name:34s} {us:9.1f} µs")
    print(
        f"  decode ratio codec/bare: {rows[1][1] / rows[0][1]:.1f}x; "
        f"without the SHA-256 check: {(rows[1][1] - rows[2][1]) / rows[0][1]:.1f}x"
    )
    print(f"  encode ratio codec/bare: {rows[4][1] / rows[3][1]:.2f}x")
    print(f"chunked frame of {args.big} bytes in {len(wire)} chunks")
    print(f"  baseline image copy          {copy_us:9.1f} µs")
    print(f"  split + encode               {split_us:9.1f} µs  ({split_us / copy_us:.1f}x copy)")
    print(f"  decode + reassemble + verify {join_us:9.1f} µs  ({join_us / copy_us:.1f}x copy)")
    print(f"  reassembly throughput        {args.big / join_us:9.1f} MB/s")


if __name__ == "__main__":
    main()

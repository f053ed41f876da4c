"""A receipt deletes from the node's flash spool exactly the frames its ranges cover: range
edges (first, last, one frame), gaps between ranges, and sessions. (A node deletes only frames it
sent in the wake the receipt arrives in, of the incarnation the range names: the receipt here
is sent once the node has replayed its spool.)"""

from __future__ import annotations

from camfleet.proto import codec
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import command_pb2, config_pb2, frame_pb2


def _spooled(dev) -> set[tuple[int, int]]:  # type: ignore[no-untyped-def]
    return {(int(n[:10]), int(n[11:21])) for n in dev.spool_files()}


def test_a_receipt_deletes_exactly_the_frames_its_ranges_cover(
    mosquitto, make_device, receiver_for
):
    """Catches an off-by-one at either end of a range (``<`` for ``<=``), a range applied to
    another session's frames or another incarnation's (from the first session of this one on),
    and a receipt that deletes past its last range."""
    cfg = config_pb2.DeviceConfig()
    cfg.sleep.awake_window_s = 1  # unreceipted frames keep a wake up this long
    cfg.camera.width, cfg.camera.height = 640, 480
    cfg.sleep.ext0_pin = 13  # the PIR: its deep sleep arms ext0, so motion can wake it
    dev = make_device(mosquitto, config=codec.encode(cfg))
    rx = receiver_for(mosquitto, dev)
    rx.receipts = False  # this test writes the receipts itself
    assert dev.run_wake().ended == "deepsleep"  # power-on: frame 1-1
    for _ in range(2):  # motion wakes: a burst of 3 each (sessions 2 and 3)
        assert dev.run_wake("ext0").ended == "deepsleep"
    spooled = _spooled(dev)
    assert spooled == {(1, 1), (2, 1), (2, 2), (2, 3), (3, 1), (3, 2), (3, 3)}
    inc = dev.read_nvs()["incarn"]
    assert isinstance(inc, bytes)
    receipt = frame_pb2.Receipt(
        stored=[
            frame_pb2.SeqRange(session=1, first_seq=2, last_seq=5, incarnation=inc),  # after 1-1
            frame_pb2.SeqRange(session=2, first_seq=1, last_seq=2, incarnation=inc),  # 1..2 of 3
            frame_pb2.SeqRange(session=3, first_seq=1, last_seq=1, incarnation=inc),  # one frame
            frame_pb2.SeqRange(session=3, first_seq=3, last_seq=3, incarnation=inc),  # gap, last
            frame_pb2.SeqRange(session=9, first_seq=1, last_seq=100, incarnation=inc),  # none
            # the same frame named without this incarnation (a receipt for the 1-1 of the device
            # before its flash was wiped): must not delete 1-1, the first session of this one
            frame_pb2.SeqRange(session=1, first_seq=1, last_seq=1),
        ]
    )

    # A node applies a receipt to the frames it sent in the same wake: keep the next wake up
    # (stay_awake), send the receipt once its replays are in, then end the stay. Messages of
    # one connection arrive in order, so the receipt is handled before the stay ends: nothing
    # here depends on how long the node waits for receipts.
    rx.send_command(command_pb2.Command(id="stay", stay_awake=command_pb2.StayAwake(seconds=120)))
    before = len(rx.got.arrivals)

    dev.start_wake()  # timer: no capture of its own
    rx.wait_for(
        lambda g: spooled <= {(f.session, f.seq) for f in g.arrivals[before:] if f.historical},
        timeout=60,
        what="the replays",
    )
    rx.send(Kind.RECEIPT, receipt)  # signed with the device's key, as the controller does
    rx.send_command(command_pb2.Command(id="sleep", stay_awake=command_pb2.StayAwake(seconds=0)))
    woke = dev.wait_wake()

    assert woke.ended == "deepsleep", woke.output
    left = _spooled(dev)
    assert left - {k for k in left if k[0] == 4} == {(1, 1), (2, 3), (3, 2)}

"""The edge sender's timed resends, on a real broker with a clock the test moves: when a frame
that stays unreceipted goes again, the back-off, its reset, the pause while the controller is
offline, and the memory of send times past 64 frames; and its window of unacknowledged
publishes, with the broker frozen. The receiver sends no receipts; the test
applies them to the spool as the agent does."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from camfleet.edge.config import EdgeConfig
from camfleet.edge.mqtt import Connection
from camfleet.edge.sender import SpoolSender
from camfleet.edge.spool import Spool, SpoolKey
from camfleet.mosquitto import Mosquitto
from camfleet.proto import codec
from camfleet.proto.receipts import make_receipt
from camfleet.proto.topics import Kind, device_topic
from camfleet.proto.v1 import telemetry_pb2
from camfleet.testing.device_receiver import DeviceReceiver
from tests.edge.conftest import agent_config

START = 1000.0


def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (for state with no event)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.005)
    return True


@dataclass
class Rig:
    spool: Spool
    sender: SpoolSender
    rx: DeviceReceiver
    now: list[float]
    corrupt: list[str]

    def put(self, *seqs: int) -> None:
        for seq in seqs:
            self.spool.put(codec.make_frame(b"frame %d" % seq, session=1, seq=seq))
        self.sender.wake()

    def at(self, t: float) -> None:
        """Move the clock to START + t and let the sender look at it."""
        self.now[0] = START + t
        self.sender.wake()

    def arrivals(self) -> list[int]:
        self.rx.sync()  # everything the sender published before this point has arrived
        with self.rx.cond:
            return [f.seq for f in self.rx.got.arrivals]

    def wait_arrivals(self, n: int, what: str) -> None:
        self.rx.wait_for(lambda g: len(g.arrivals) >= n, timeout=30, what=what)

    def receipt(self, *seqs: int) -> None:
        self.spool.apply_receipt(make_receipt([(1, s) for s in seqs], 0))
        self.sender.receipt_arrived()


def _bare_connection(cfg: EdgeConfig) -> Connection:
    """The agent's broker connection with no agent behind it: the sender alone uses it."""
    return Connection(
        cfg,
        will=lambda: (1, b""),
        on_connected=lambda session: None,
        on_disconnected=lambda: None,
        on_message=lambda topic, payload, retained: None,
    )


@pytest.fixture
def rig(mosquitto: Mosquitto, tmp_path: Path, device_id: str) -> Iterator[Rig]:
    cfg = agent_config(tmp_path, mosquitto, device_id)
    rx = DeviceReceiver(mosquitto.host, mosquitto.port, device_id, receipts=False).start()
    conn = _bare_connection(cfg)
    spool = Spool(tmp_path / "spool", max_frames=1000, max_bytes=10**8)
    now = [START]
    corrupt: list[str] = []
    sender = SpoolSender(
        spool,
        conn,
        device_id=device_id,
        root=cfg.broker.root,
        connected_session=lambda: 1,
        max_payload=lambda: 1 << 20,
        window=8,  # fewer than the 70 frames of the pruning test: the window must slide
        on_corrupt=corrupt.append,
        resend_after_s=30.0,
        max_resend_after_s=100.0,
        clock=lambda: now[0],
    )
    conn.start()
    assert conn.connected.wait(60)
    sender.start()
    yield Rig(spool, sender, rx, now, corrupt)
    sender.stop()
    conn.close()
    rx.close()


def test_an_unreceipted_frame_goes_again_after_a_doubling_wait_reset_by_a_receipt(rig: Rig) -> None:
    """Catches: a resend before ``resend_after`` (the wait computed from the wrong end, ``<=``
    at the edge), no resend at all, a back-off that does not double (or is not capped), and a
    back-off not reset when a receipt moves the oldest unreceipted frame on."""
    rig.put(1, 2, 3)
    rig.wait_arrivals(3, "the first sends")
    rig.at(29.9)
    assert rig.arrivals() == [1, 2, 3], "resent before 30 s"
    rig.at(30)
    rig.wait_arrivals(6, "the resend after 30 s")
    assert rig.arrivals() == [1, 2, 3, 1, 2, 3]
    rig.at(30 + 59.9)  # the wait doubled: 60 s from the resend
    assert len(rig.arrivals()) == 6, "the wait did not double"
    rig.at(30 + 60)
    rig.wait_arrivals(9, "the resend after 60 more seconds")
    rig.at(90 + 99.9)  # doubled again, but capped at max_resend_after (100 s)
    assert len(rig.arrivals()) == 9
    rig.at(90 + 100)
    rig.wait_arrivals(12, "the resend at the cap")
    # Frame 1 is receipted: frame 2 is the oldest now, and the wait is back to 30 s.
    rig.receipt(1)
    rig.at(190 + 29.9)
    assert len(rig.arrivals()) == 12
    rig.at(190 + 30)
    rig.wait_arrivals(14, "the resend 30 s after the oldest frame changed")
    assert rig.arrivals()[12:] == [2, 3]


def test_no_timed_resend_while_the_controller_is_known_offline(rig: Rig) -> None:
    """Catches timed resends going on while the controller's presence says offline (traffic
    for nobody, every ``resend_after``), and the pause applied while it is online instead."""
    rig.put(1, 2)
    rig.wait_arrivals(2, "the first sends")
    rig.sender.controller_online = False
    with rig.sender.conn.changed:  # the sender decides under this lock: decide here, now
        rig.now[0] = START + 500
        assert rig.sender._resend_check() == 1.0
        assert not rig.sender._rewind.is_set(), "a resend decided while the controller is offline"
    rig.at(500)
    assert rig.arrivals() == [1, 2], "resent while the controller is offline"
    rig.sender.controller_online = True
    rig.at(501)
    rig.wait_arrivals(4, "the resend once the controller is online")
    assert rig.arrivals() == [1, 2, 1, 2]


def test_the_oldest_frame_keeps_its_send_time_when_the_memory_is_pruned(rig: Rig) -> None:
    """Send times of receipted frames are forgotten once more than 2 x depth + 64 are kept.
    Catches the pruning keeping the wrong ones: the oldest unreceipted frame would lose its
    send time, never go again, and a receipt for it could no longer delete it (``was_sent``)."""
    rig.put(*range(1, 71))
    rig.wait_arrivals(70, "70 frames")
    rig.receipt(*range(2, 71))  # all but the first
    assert rig.spool.depth == 1
    rig.put(71)  # sent: 71 send times kept > 2 x 2 + 64, pruned to the spooled frames
    rig.wait_arrivals(71, "frame 71")
    # the sender prunes right after publishing frame 71, which may reach the receiver first
    assert _until(lambda: not rig.sender.was_sent(SpoolKey(1, 2))), "receipted send times kept"
    assert rig.sender.was_sent(SpoolKey(1, 1)) and rig.sender.was_sent(SpoolKey(1, 71))
    rig.at(30)
    rig.wait_arrivals(73, "the resend of the two unreceipted frames")
    assert rig.arrivals()[71:] == [1, 71]


def _frozen(pid: int) -> bool:
    """The process is stopped (state T in /proc/PID/stat): SIGSTOP has taken effect."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "T"


def _waiting(sender: SpoolSender) -> bool:
    """The sender sits in ``wait`` on its condition (it has made its decision). CPython's
    Condition keeps its waiting threads in ``_waiters``; the sender is the only thread that
    waits on this one. Call with the condition's lock held."""
    return bool(sender.conn.changed._waiters)  # type: ignore[attr-defined]


def _sent_once_waiting(sender: SpoolSender) -> int:
    """How many frames the sender had published when it next sat waiting for a PUBACK or more
    work (0 if it did not within the deadline). Read under the condition's lock, so the count
    and the waiting are one moment."""
    cond = sender.conn.changed
    seen: list[int] = []

    def waiting_after_sends() -> bool:
        with cond:
            if sender.sent and _waiting(sender):
                seen.append(sender.sent)
        return bool(seen)

    return seen[0] if _until(waiting_after_sends) else 0


def test_the_window_holds_unacknowledged_publishes_until_their_pubacks(
    rig: Rig, mosquitto: Mosquitto
) -> None:
    """With the broker frozen (SIGSTOP: the connection stays up, no PUBACK comes back) and 20
    frames spooled, the sender publishes exactly its window (8) and waits. Catches the window
    counting acknowledged publishes instead of unacknowledged ones (edge_sender #19: every
    spooled frame goes at once, however many the broker has not acknowledged), and a window
    that does not reopen when the PUBACKs come (after SIGCONT every frame arrives, in order)."""
    assert mosquitto.proc is not None
    pid = mosquitto.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        assert _until(lambda: _frozen(pid)), "the broker did not stop"
        with rig.sender.conn.changed:  # all 20 spooled before the sender looks at the spool
            for seq in range(1, 21):
                rig.spool.put(codec.make_frame(b"frame %d" % seq, session=1, seq=seq))
            rig.sender.conn.changed.notify_all()
        assert _sent_once_waiting(rig.sender) == rig.sender.window == 8
    finally:
        os.kill(pid, signal.SIGCONT)
    rig.wait_arrivals(20, "every frame once the broker acknowledges again")
    assert rig.arrivals() == list(range(1, 21))


def test_the_sender_waits_while_disconnected(rig: Rig, mosquitto: Mosquitto) -> None:
    """With the broker gone the sender sleeps on its condition until the connection is back.
    Catches the wait for a connection skipped (edge_sender #5: the sender spins on the lock
    for the whole outage, a core busy on an edge box)."""
    mosquitto.stop()
    assert _until(lambda: not rig.sender.conn.connected.is_set()), "still connected"

    def waiting_offline() -> bool:
        with rig.sender.conn.changed:
            return not rig.sender.conn.connected.is_set() and _waiting(rig.sender)

    # a spinning sender is never in wait: only a broken one runs into this deadline
    assert _until(waiting_offline, timeout=5), "the sender does not wait while disconnected"


def test_a_damaged_spool_file_is_reported_and_skipped(rig: Rig, tmp_path: Path) -> None:
    """A spooled file damaged on disk (bit rot, a bad SD card): the sender reports it (the agent
    turns that into a spool_corrupt event) and goes on with the next frame. Catches the report
    dropped (a frame lost without a word)."""
    with rig.sender.conn.changed:  # the sender looks at the spool only while holding this
        rig.spool.put(codec.make_frame(b"frame 1", session=1, seq=1))
        damaged = rig.spool.directory / SpoolKey(1, 1).filename
        damaged.write_bytes(b"\x00garbage" * 10)
    rig.put(2)
    rig.wait_arrivals(1, "the frame after the damaged one")
    assert rig.arrivals() == [2]
    assert len(rig.corrupt) == 1 and "1-1" in rig.corrupt[0], rig.corrupt


def test_frames_paho_still_holds_at_reconnect_are_left_to_the_sender(
    shared_mosquitto: Mosquitto, tmp_path: Path, device_id: str
) -> None:
    """Frames (and chunks) paho holds unacknowledged when a connection is (re)made are dropped:
    the spool sender replays from the oldest unreceipted frame itself, and a frame paho sent
    again on its own could overtake an older one (first arrivals out of capture order after
    a broker crash). Other queued messages (events, acks) still go. Catches the drop removed:
    paho sends its queued frame on CONNACK, before the event queued after it."""
    cfg = agent_config(tmp_path, shared_mosquitto, device_id)
    rx = DeviceReceiver(shared_mosquitto.host, shared_mosquitto.port, device_id).start()
    conn = _bare_connection(cfg)
    spool = Spool(tmp_path / "spool", max_frames=10, max_bytes=10**6)
    sender = SpoolSender(  # not started: only its topics matter here
        spool,
        conn,
        device_id=device_id,
        root=cfg.broker.root,
        connected_session=lambda: 1,
        max_payload=lambda: 1 << 20,
        window=8,
        on_corrupt=lambda msg: None,
    )
    # Queued in paho while there is no connection, like the frames of a connection that died.
    conn.publish(sender.frame_topic, codec.encode(codec.make_frame(b"held", session=1, seq=1)))
    event = telemetry_pb2.Event(timestamp_ms=1, session=1, type="test", message="queued")
    conn.publish(device_topic(device_id, Kind.EVENT, cfg.broker.root), codec.encode(event))
    conn.start()
    try:
        rx.wait_for(lambda g: len(g.events) >= 1, what="the queued event")
        assert not rx.frames, "paho sent a frame the spool sender owns"
    finally:
        conn.close()
        rx.close()


def _lose_the_session_with_frame_1_spooled(rig: Rig, mosquitto: Mosquitto) -> None:
    """SIGKILL the broker, spool frame 1 while it is down, restart it without sessions, and
    return once the sender, reconnected, holds its frames."""
    conn = rig.sender.conn
    rig.rx.subscribed.clear()
    mosquitto.kill()
    assert _until(lambda: not conn.connected.is_set()), "still connected"
    rig.put(1)
    mosquitto.start()
    assert _until(lambda: conn.connects >= 2 and conn.connected.is_set(), 60), "no reconnect"
    assert conn.session_lost

    def holding() -> bool:  # connected, a frame spooled, and the sender chose to wait
        with conn.changed:
            return conn.connected.is_set() and rig.sender.held == 1 and _waiting(rig.sender)

    assert _until(holding), "the sender did not hold its frames"
    assert rig.sender.sent == 0
    # The controller's stand-in must be subscribed again before its presence counts (the real
    # controller publishes ONLINE only after its SUBACK); under load it reconnects last.
    assert rig.rx.subscribed.wait(60), "the receiver did not subscribe again"


def test_after_the_broker_lost_the_session_frames_wait_for_the_controller(
    rig: Rig, mosquitto: Mosquitto
) -> None:
    """SIGKILL before the broker's autosave: it comes back without this client's session, and
    most likely without the controller's subscription. Frames sent before the controller
    subscribes again would arrive after the ones sent between its subscription and its birth,
    so the sender sends nothing on that connection until the controller's ONLINE presence
    arrives on it. Catches the hold removed (the frame goes at once, to nobody)."""
    _lose_the_session_with_frame_1_spooled(rig, mosquitto)
    # the agent does this on an ONLINE presence
    rig.sender.controller_present(rig.sender.conn.epoch)
    rig.wait_arrivals(1, "the frame, once the controller is there")
    assert rig.arrivals() == [1]


def test_after_a_lost_session_frames_go_anyway_when_no_controller_comes(
    rig: Rig, mosquitto: Mosquitto
) -> None:
    """A fleet without a controller presence on its broker still gets its frames after a
    session-losing crash: the hold ends after ``resend_after`` (30 s on the test's clock).
    Catches a hold that never ends without a controller (its deadline computed wrong)."""
    _lose_the_session_with_frame_1_spooled(rig, mosquitto)
    rig.at(30.0)  # no controller presence: the hold's deadline has come
    rig.wait_arrivals(1, "the frame, without a controller, after the hold")
    assert rig.arrivals() == [1]

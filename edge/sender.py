"""Publishes spooled frames in order, a bounded window at a time, and replays after reconnects.

The spool is the only source: a captured frame is first made durable, then sent from disk. On
every new connection the sender starts again from the oldest frame not yet receipted, so frames
captured during an outage (and frames sent but never receipted) are replayed in (session, seq)
order; a frame whose session is not the live connection's is flagged ``historical``. Within a
connection, unreceipted frames go again when the controller announces itself (``rewind``) or
when the oldest one stays unreceipted too long (``_resend_check``). Frames whose encoded size
exceeds the max payload travel as chunks (camfleet.proto.chunking).

A reconnect to a broker that lost this agent's persistent session (``Connection.session_lost``:
a crash before its autosave) most likely lost the controller's subscription too. Frames sent
before the controller subscribes again reach nobody and come back only with the replay its
birth triggers, after the frames sent between its subscription and that birth: first arrivals
out of capture order. So on such a connection nothing is sent until the controller's ONLINE
presence arrives on it (its live birth, or the retained copy our subscription hands over: it
was published after the controller's subscription), or ``resend_after_s`` passed without one
(a fleet without a controller presence still gets its frames).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho

from camfleet.edge.mqtt import Connection
from camfleet.edge.spool import CorruptFrame, Spool, SpoolKey
from camfleet.proto import codec
from camfleet.proto.chunking import needs_chunking, split_frame
from camfleet.proto.topics import Kind, device_topic
from camfleet.proto.v1 import frame_pb2

log = logging.getLogger(__name__)


class SpoolSender:
    """One thread publishing the spool over ``connection``, at most ``window`` unacked."""

    def __init__(
        self,
        spool: Spool,
        connection: Connection,
        *,
        device_id: str,
        root: str,
        connected_session: Callable[[], int],
        max_payload: Callable[[], int],
        window: int,
        on_corrupt: Callable[[str], None],
        resend_after_s: float = 30.0,
        max_resend_after_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spool = spool
        self.conn = connection
        self.frame_topic = device_topic(device_id, Kind.FRAME, root)
        self.chunk_topic = device_topic(device_id, Kind.CHUNK, root)
        connection.owned_topics.update((self.frame_topic, self.chunk_topic))  # replayed here
        self._connected_session = connected_session
        self._max_payload = max_payload
        self.window = window
        self._on_corrupt = on_corrupt
        self.base_resend_after = resend_after_s
        self.resend_after = resend_after_s
        self.max_resend_after = max(max_resend_after_s, resend_after_s)
        self._clock = clock
        self._sent_at: dict[SpoolKey, float] = {}  # when each frame was last published
        self._stuck: SpoolKey | None = None  # the oldest frame the backoff is about
        self._rewind = threading.Event()
        #: the controller's last known presence (None = never heard of it): no timed resends
        #: while it is known to be offline, its birth triggers one
        self.controller_online: bool | None = None
        self._controller_epoch = -1  # the connection on which the controller was last ONLINE
        self.held = 0  # connections on which frames waited for the controller (session lost)
        self.rewinds = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0  # frames published (replays included)
        self.replayed = 0  # of which historical

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edge-sender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(10)

    def rewind(self) -> None:
        """Send every unreceipted frame again from the oldest (the controller came back)."""
        self._rewind.set()
        self.wake()

    def controller_present(self, epoch: int) -> None:
        """The controller's ONLINE presence arrived on the connection of ``epoch``."""
        self._controller_epoch = epoch
        self.wake()

    def was_sent(self, key: SpoolKey) -> bool:
        """The frame was published on this connection (receipts may delete only those)."""
        return key in self._sent_at

    def receipt_arrived(self) -> None:
        """Frames were deleted: look again (the oldest frame, and with it the backoff, may
        have changed)."""
        self.wake()

    def wake(self) -> None:
        """A frame was spooled (or something changed): look for work now."""
        with self.conn.changed:
            self.conn.changed.notify_all()

    def _run(self) -> None:
        cond = self.conn.changed
        while not self._stop.is_set():
            with cond:
                while not self._stop.is_set() and not self.conn.connected.is_set():
                    cond.wait(1.0)
                epoch = self.conn.epoch
                session_lost = self.conn.session_lost
            if self._stop.is_set():
                return
            try:
                self._send_connection(epoch, session_lost)
            except Exception:  # a bug must not stop the sender for good: frames wait on disk
                log.exception("spool sender failed; retrying")
                self._stop.wait(1.0)

    def _send_connection(self, epoch: int, session_lost: bool = False) -> None:
        """Send everything spooled, oldest first, until the connection of ``epoch`` ends.
        With ``session_lost``, first wait for the controller (see the module docstring)."""
        cond = self.conn.changed
        cursor: SpoolKey | None = None
        inflight: list[paho.MQTTMessageInfo] = []
        self._sent_at.clear()  # everything goes again on a new connection anyway
        hold_until = self._clock() + self.base_resend_after if session_lost else None
        if session_lost:
            self.held += 1
        while not self._stop.is_set():
            with cond:
                while True:
                    if self._stop.is_set() or self.conn.epoch != epoch:
                        return
                    if not self.conn.connected.is_set():
                        return
                    if hold_until is not None:
                        left = hold_until - self._clock()
                        if self._controller_epoch != epoch and left > 0:
                            cond.wait(min(1.0, left))
                            continue
                        hold_until = None
                    timeout = self._resend_check()
                    if self._rewind.is_set():
                        self._rewind.clear()
                        cursor = None
                        self.rewinds += 1
                    inflight = [i for i in inflight if not i.is_published()]
                    key = self.spool.next_after(cursor)
                    if key is not None and len(inflight) < self.window:
                        break
                    cond.wait(timeout)
            try:
                frame = self.spool.read(key)
            except FileNotFoundError:  # receipted or dropped meanwhile
                cursor = key
                continue
            except CorruptFrame as exc:
                self._on_corrupt(str(exc))
                cursor = key
                continue
            if frame.session != self._connected_session():
                frame.historical = True
                self.replayed += 1
            self._sent_at[key] = self._clock()  # before: its receipt may come back at once
            inflight.extend(self._publish(frame))
            self.sent += 1
            if len(self._sent_at) > 2 * self.spool.depth + 64:  # forget receipted frames
                self._sent_at = {k: t for k, t in self._sent_at.items() if k in self.spool}
            cursor = key

    def _resend_check(self) -> float:
        """A frame not receipted ``resend_after`` seconds after it was sent is sent again, with
        every newer unreceipted frame (a broker that crashed may have lost them, or the
        controller's subscription with them). While the same oldest frame stays unreceipted
        the wait doubles up to ``max_resend_after``; it resets when the oldest frame changes.
        Returns how long the sender may wait before checking again."""
        oldest = self.spool.next_after(None)
        if oldest != self._stuck:
            self._stuck = oldest
            self.resend_after = self.base_resend_after
        if oldest is None or self.controller_online is False:
            return 1.0
        sent = self._sent_at.get(oldest)
        if sent is None:
            return 1.0  # not sent on this connection yet: the cursor will get to it
        waited = self._clock() - sent
        if waited < self.resend_after:
            return min(1.0, self.resend_after - waited)
        log.info(
            "frame %d-%d not receipted after %.1f s: sending %d frames again",
            oldest.session,
            oldest.seq,
            waited,
            self.spool.depth,
        )
        self.resend_after = min(self.resend_after * 2, self.max_resend_after)
        self._rewind.set()
        return 0.0

    def _publish(self, frame: frame_pb2.Frame) -> list[paho.MQTTMessageInfo]:
        max_payload = self._max_payload()
        if not needs_chunking(frame, max_payload):
            return [self.conn.publish(self.frame_topic, codec.encode(frame), qos=1)]
        return [
            self.conn.publish(self.chunk_topic, codec.encode(chunk), qos=1)
            for chunk in split_frame(frame, max_payload)
        ]

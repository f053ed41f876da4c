"""Session numbers and per-session frame sequence numbers.

Rules (docs/protocol.md, "Sessions, births and wills"): the session number increments on every
connect and is persisted before use, so (session, seq) never repeats across reconnects, restarts
and SIGKILL. A frame carries the session in effect when it was captured: the last connected one
(frames captured during an outage continue its seq), or a number allocated at start-up for frames
captured before the first connect. A frame sent on a connection of another session is historical.
"""

from __future__ import annotations

import threading

from camfleet.edge.state import AgentState


class SessionNumbers:
    """Allocates connect sessions and frame keys; thread-safe."""

    def __init__(self, state: AgentState, first_seq_after: int = 0) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._allocated = state.next_session()
        self._allocated_used = False
        self.frame_session = self._allocated
        self._seq = first_seq_after
        self.connected_session = 0  # session of the live connection, 0 when offline

    def for_connect(self) -> int:
        """The session for the next CONNECT (its will carries it): a fresh one if the last
        allocated number has been used by a connection or by frames."""
        with self._lock:
            if self._allocated_used:
                self._allocated = self._state.next_session()
                self._allocated_used = False
            return self._allocated

    def connected(self, session: int) -> None:
        """CONNACK received for ``session``: new frames belong to it, seq restarts at 1."""
        with self._lock:
            self._allocated_used = True
            self.connected_session = session
            if self.frame_session != session:
                self.frame_session = session
                self._seq = 0

    def disconnected(self) -> None:
        with self._lock:
            self.connected_session = 0

    def next_frame(self) -> tuple[int, int]:
        """(session, seq) for a new frame."""
        with self._lock:
            if self.frame_session == self._allocated:
                self._allocated_used = True
            self._seq += 1
            return self.frame_session, self._seq

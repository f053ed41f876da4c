"""What the controller just committed, fanned out in-process: Home Assistant's topics and the
dashboard's event stream follow the fleet from here, fed by the ingest (the controller's own
MQTT subscription), never by polling the database.

Events are small dicts with a ``type``: ``state`` (a birth, will or going to sleep was applied),
``telemetry``, ``event`` (a device event), ``frame`` (a frame is durably stored) and
``command`` (a command changed status). Listeners run in the writer thread after the commit:
they must return at once (hand work to their own bounded queue or worker).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("camfleet.controller.live")

Event = dict[str, Any]
Listener = Callable[[Event], None]


class LiveEvents:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns the function that removes it."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = [x for x in self._listeners if x is not listener]

        return unsubscribe

    def publish(self, event: Event) -> None:
        for listener in self._listeners:  # a copy-on-write list: no lock while calling
            try:
                listener(event)
            except Exception:  # one broken listener must not stop the others or the writer
                log.exception("live event listener failed")

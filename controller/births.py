"""Follow-up work of device births on ONE bounded worker thread.

A birth may need the device's desired config refreshed (new device, new groups, a compiled
schedule) and its unacknowledged commands published again. That work touches the registry and
the broker, so it runs off the writer thread, but never as a thread per birth: device ids wait
in an ordered set (a device born twice before its turn is handled once) and the worker takes
them in batches, one registry transaction per batch. A burst of births therefore costs one
thread and memory bounded by the number of devices.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("camfleet.controller.births")


class BirthWorker:
    def __init__(self, work: Callable[[list[str]], None], batch: int = 256) -> None:
        self._work = work
        self._batch = batch
        self._pending: dict[str, None] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="camfleet-births", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, device_id: str) -> None:
        with self._cond:
            self._pending[device_id] = None
            self._cond.notify()

    def depth(self) -> int:
        with self._cond:
            return len(self._pending)

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._busy

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                ids = []
                for device_id in list(self._pending)[: self._batch]:
                    del self._pending[device_id]
                    ids.append(device_id)
                self._busy = True
            try:
                self._work(ids)
            except Exception:
                log.exception("after-birth work for %d devices failed", len(ids))
            finally:
                with self._cond:
                    self._busy = False

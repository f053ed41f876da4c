"""Block delivery: answers ``OtaBlockRequest`` with ``OtaBlock`` from a verified artifact.

Requests arrive on the MQTT network thread and go into a bounded queue; one worker thread
answers them, so reading and hashing never hold up frame ingest. Artifacts are read once and
kept (with each block's SHA-256 and its encoded ``OtaBlock``) in a cache bounded in bytes, so a
block asked for by twenty devices is encoded once. Two limits keep a rollout from starving
ingest: at most ``max_transfers`` devices are served at a time (a device joins when another has
been quiet for ``transfer_idle_s``; the others' requests are dropped and asked again by the
device after its retry timer) and at most ``blocks_per_s`` blocks are published per second
(a token bucket). Any block can be asked for at any time, so a transfer resumes wherever the
device stopped.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from camfleet.controller.metrics import Metrics
from camfleet.controller.ota.artifacts import ArtifactStore, NotFound
from camfleet.proto import codec, topics
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import ota_pb2

log = logging.getLogger("camfleet.controller.ota")

BLOCK_SIZE = 4096


@dataclass
class _Cached:
    blocks: list[bytes]  # encoded OtaBlock messages, ready to publish

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self.blocks)


class BlockServer:
    def __init__(
        self,
        artifacts: ArtifactStore,
        publish: Callable[..., None],
        metrics: Metrics,
        root: str = topics.DEFAULT_ROOT,
        *,
        max_transfers: int = 8,
        blocks_per_s: float = 200.0,
        transfer_idle_s: float = 10.0,
        cache_bytes: int = 64 * 1024 * 1024,
        queue_size: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.artifacts = artifacts
        self.publish = publish
        self.metrics = metrics
        self.root = root
        self.max_transfers = max_transfers
        self.blocks_per_s = blocks_per_s
        self.transfer_idle_s = transfer_idle_s
        self.cache_bytes = cache_bytes
        self.clock = clock
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._active: dict[str, float] = {}  # device -> last served (monotonic)
        self._queue: queue.Queue[tuple[str, ota_pb2.OtaBlockRequest] | None] = queue.Queue(
            queue_size
        )
        self._tokens = blocks_per_s
        self._refilled = clock()
        self._stop = threading.Event()
        #: Waits for the token bucket; returns True when the server stops (tests pass a fake).
        self._wait = wait or self._stop.wait
        self._thread = threading.Thread(target=self._loop, name="camfleet-ota-blocks", daemon=True)
        #: Called on the worker thread after serving a request: (device, artifact, first, count,
        #: total blocks). The rollout engine records download progress from it.
        self.on_served: Callable[[str, str, int, int, int], None] | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        if self._thread.is_alive():
            self._thread.join(5)

    def submit(self, device_id: str, request: ota_pb2.OtaBlockRequest) -> None:
        """From the network thread: never blocks; a full queue drops (the device asks again)."""
        try:
            self._queue.put_nowait((device_id, request))
        except queue.Full:
            self.metrics.inc("ota_requests_dropped_total", reason="queue_full")

    def active_transfers(self) -> int:
        now = self.clock()
        return sum(1 for t in self._active.values() if now - t < self.transfer_idle_s)

    # --- worker -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            device, req = item
            try:
                self.serve(device, req)
            except Exception:
                log.exception("serving blocks of %s to %s failed", req.artifact_id, device)

    def _admit(self, device: str) -> bool:
        now = self.clock()
        for d, t in list(self._active.items()):
            if now - t >= self.transfer_idle_s:
                del self._active[d]
        if device in self._active or len(self._active) < self.max_transfers:
            self._active[device] = now
            return True
        return False

    def serve(self, device: str, req: ota_pb2.OtaBlockRequest) -> None:
        """Answer one request (on the worker thread; tests call it directly)."""
        cached = self._artifact(req.artifact_id)
        if cached is None:
            self.metrics.inc("ota_requests_dropped_total", reason="unknown_artifact")
            return
        if not self._admit(device):
            self.metrics.inc("ota_requests_dropped_total", reason="max_transfers")
            return
        total = len(cached.blocks)
        topic = topics.device_topic(device, Kind.OTA_BLOCK, self.root)
        served = 0
        for j in range(min(req.count, 1024)):
            if req.wanted and (
                j // 8 >= len(req.wanted) or not req.wanted[j // 8] & (1 << (j % 8))
            ):
                continue
            i = req.first_block + j
            if i >= total:
                break
            if not self._take_token():
                return
            self.publish(topic, cached.blocks[i], qos=1)
            served += 1
        self._active[device] = self.clock()
        self.metrics.inc("ota_blocks_served_total", served)
        if self.on_served is not None:
            self.on_served(device, req.artifact_id, req.first_block, req.count, total)

    def _take_token(self) -> bool:
        """Take one token of the blocks-per-second bucket, waiting for it; False when stopping."""
        now = self.clock()
        self._tokens = min(
            self.blocks_per_s, self._tokens + (now - self._refilled) * self.blocks_per_s
        )
        self._refilled = now
        if self._tokens < 1:
            if self._wait((1 - self._tokens) / self.blocks_per_s):
                return False
            self._tokens = 1.0  # the wait earned the missing part (no float creep to 1.0)
            self._refilled = self.clock()
        self._tokens -= 1
        return True

    def _artifact(self, artifact_id: str) -> _Cached | None:
        cached = self._cache.get(artifact_id)
        if cached is not None:
            self._cache.move_to_end(artifact_id)
            return cached
        try:
            row, data = self.artifacts.read(artifact_id)
        except (NotFound, FileNotFoundError):
            return None
        if hashlib.sha256(data).hexdigest() != row["sha256"]:
            # Altered behind our back. Served as it is: the node checks the offer's SHA-256 and
            # the signature after reading the image back, and that check must hold on its own
            # (a compromised controller would not refuse either).
            self.metrics.inc("ota_artifact_mismatch_total")
            log.error("artifact %s on disk does not match its SHA-256", artifact_id)
        blocks = []
        total = (len(data) + BLOCK_SIZE - 1) // BLOCK_SIZE
        for i in range(total):
            chunk = data[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE]
            msg = ota_pb2.OtaBlock(
                artifact_id=artifact_id,
                index=i,
                total_blocks=total,
                sha256=hashlib.sha256(chunk).digest(),
                data=chunk,
            )
            blocks.append(codec.encode(msg))
        cached = _Cached(blocks)
        self._cache[artifact_id] = cached
        while (
            len(self._cache) > 1 and sum(c.nbytes for c in self._cache.values()) > self.cache_bytes
        ):
            self._cache.popitem(last=False)
        return cached

"""Between the channels and the rest: parse the topic, decode, count what is malformed, route.

Runs in the MQTT network thread (decoding is ~3 us a message); everything that touches the disk
goes to the writer. Malformed input is counted per reason and kind, logged once per (reason,
kind), and acknowledged at once (it will never become valid, and holding it would block the
broker's in-flight window for the good traffic behind it). Chunks are reassembled here and each
is acknowledged as soon as it is held (never kept in the broker's in-flight window waiting for
its siblings: a thousand incomplete frames would otherwise stop every device's ingest), except
the chunk completing a frame, acknowledged with the frame by the writer. If the controller dies
before a frame is durable, or its partial frame expires or is evicted, the device gets no
receipt for it and sends it again from its spool.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from camfleet.controller.ingest.jobs import Delivery, Job
from camfleet.controller.ingest.writer import Writer
from camfleet.controller.metrics import Metrics
from camfleet.proto import codec, topics
from camfleet.proto.chunking import Reassembler
from camfleet.proto.errors import ContractError, Reason
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import frame_pb2, ota_pb2

log = logging.getLogger("camfleet.controller.ingest")

#: Kinds the controller stores through the writer; OTA block requests go to the block server
#: when one is given, other device kinds are counted as unhandled and acknowledged.
HANDLED = frozenset(
    {Kind.STATE, Kind.FRAME, Kind.CHUNK, Kind.TELEMETRY, Kind.EVENT, Kind.ACK, Kind.REPORTED}
)

Ack = Callable[[int, int], object]


class Dispatcher:
    def __init__(
        self,
        writer: Writer,
        metrics: Metrics,
        root: str = topics.DEFAULT_ROOT,
        chunk_timeout_s: float = 120.0,
        reassembly_max_bytes: int = 64 * 1024 * 1024,
        chunk_sets_per_device: int = 8,
        decode_thread: bool = True,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        on_controller_state: Callable[[bytes], None] | None = None,
        ota_requests: Callable[[str, ota_pb2.OtaBlockRequest], None] | None = None,
    ) -> None:
        self.writer = writer
        self.ota_requests = ota_requests
        self.metrics = metrics
        self.root = root
        self.clock_ms = clock_ms
        self.on_controller_state = on_controller_state
        self.reassembler = Reassembler(
            max_bytes=reassembly_max_bytes,
            max_per_device=chunk_sets_per_device,
            timeout_s=chunk_timeout_s,
        )
        self._lock = threading.Lock()
        self._logged: set[tuple[str, str]] = set()
        self._evict_logged: set[str] = set()
        self._topics: dict[str, topics.Topic] = {}
        self._frames: queue.Queue[tuple[str, bytes, Delivery, int] | None] = queue.Queue()
        self._decoder = (
            threading.Thread(target=self._decode_loop, name="camfleet-decode", daemon=True)
            if decode_thread
            else None
        )

    def on_message(
        self, topic: str, payload: bytes, mid: int, qos: int, retain: bool, ack: Ack
    ) -> None:
        """Handle one broker delivery. Never raises."""
        delivery = Delivery(ack, mid, qos)
        try:
            self._route(topic, payload, delivery, retain)
        except ContractError as exc:
            self._reject(exc.reason.value, _kind_label(topic, self.root), exc.detail, delivery)
        except Exception as exc:  # a bug must not kill the network thread nor block the window
            log.exception("internal error on %s", topic)
            self._reject("internal", _kind_label(topic, self.root), str(exc), delivery)

    def _reject(self, reason: str, kind: str, detail: str, delivery: Delivery) -> None:
        self.metrics.inc("malformed_total", reason=reason, kind=kind)
        if (reason, kind) not in self._logged:
            self._logged.add((reason, kind))
            log.warning("refused %s message (%s): %s [logged once]", kind, reason, detail)
        delivery.done()

    def _parse(self, topic: str) -> topics.Topic:
        # A fleet publishes on a few topics per device, over and over: parse each once.
        parsed = self._topics.get(topic)
        if parsed is None:
            parsed = topics.parse(topic, self.root)  # ContractError: not cached
            if len(self._topics) >= 65536:
                self._topics.clear()
            self._topics[topic] = parsed
        return parsed

    def _route(self, topic: str, payload: bytes, delivery: Delivery, retain: bool = False) -> None:
        parsed = self._parse(topic)
        if parsed.device_id is None:
            # Controller presence (ours or another controller's): not ours to ingest, but the
            # service re-asserts its own presence if someone overwrote it.
            self.metrics.inc("unhandled_total", kind="controller_state")
            delivery.done()
            # A retained copy is what our own subscription hands over at connect; we publish
            # our ONLINE then anyway. Only a live message says someone changed it meanwhile.
            if self.on_controller_state is not None and not retain:
                self.on_controller_state(payload)
            return
        if parsed.kind is Kind.OTA_REQUEST and self.ota_requests is not None:
            # Answered by the OTA block server (its own thread); nothing to store.
            req = codec.decode(parsed.kind, payload).message
            assert isinstance(req, ota_pb2.OtaBlockRequest)
            self.metrics.inc("messages_total", kind=parsed.kind.value)
            delivery.done()
            self.ota_requests(parsed.device_id, req)
            return
        if parsed.kind not in HANDLED:
            if parsed.kind in topics.CONTROLLER_TO_DEVICE:
                raise ContractError(
                    Reason.WRONG_KIND, f"{parsed.kind} is a controller-to-device kind"
                )
            self.metrics.inc("unhandled_total", kind=parsed.kind.value)
            delivery.done()
            return
        if not payload:
            # An empty retained payload clears a retained topic (e.g. a decommissioned device).
            if parsed.kind in topics.RETAINED:
                delivery.done()
                return
            raise ContractError(Reason.BAD_PROTOBUF, f"empty payload on {parsed.kind}")
        now = self.clock_ms()
        if parsed.kind is Kind.FRAME and self._decoder is not None:
            # Whole frames (the bulk of the bytes) are decoded and SHA-256-checked on the decoder
            # thread: hashing releases the GIL, so it overlaps the network thread's reading.
            self._frames.put((parsed.device_id, payload, delivery, now))
            return
        self._decode_submit(parsed.kind, parsed.device_id, payload, delivery, now)

    def _decode_submit(
        self, kind: Kind, device: str, payload: bytes, delivery: Delivery, now: int
    ) -> None:
        decoded = codec.decode(kind, payload)  # CPU by thread: thread_cpu_seconds
        if decoded.unknown_fields:
            self.metrics.inc("unknown_fields_total", kind=kind.value)
        self.metrics.inc("messages_total", kind=kind.value)
        if kind is Kind.CHUNK:
            chunk = decoded.message
            assert isinstance(chunk, frame_pb2.FrameChunk)
            self._chunk(device, chunk, delivery, now)
            return
        self.writer.submit(Job(kind, device, decoded.message, [delivery], now))

    def _decode_loop(self) -> None:
        while True:
            item = self._frames.get()
            if item is None:
                return
            device, payload, delivery, now = item
            try:
                self._decode_submit(Kind.FRAME, device, payload, delivery, now)
            except ContractError as exc:
                self._reject(exc.reason.value, Kind.FRAME.value, exc.detail, delivery)
            except Exception as exc:
                log.exception("internal error decoding a frame of %s", device)
                self._reject("internal", Kind.FRAME.value, str(exc), delivery)

    def start(self) -> None:
        if self._decoder is not None:
            self._decoder.start()

    def stop(self) -> None:
        if self._decoder is not None and self._decoder.is_alive():
            self._frames.put(None)
            self._decoder.join(10)

    def depth(self) -> int:
        return self._frames.qsize()

    def _chunk(
        self, device: str, chunk: frame_pb2.FrameChunk, delivery: Delivery, now: int
    ) -> None:
        try:
            with self._lock:
                self._expire()
                frame = self.reassembler.add(device, chunk)  # ContractError -> _reject acks it
                self._count_evictions()
        except ContractError:
            self._count_evictions()
            raise
        if frame is None:
            delivery.done()  # held in memory now; the device resends the frame if it is lost
            return
        # The chunk that completes a frame is acknowledged with the frame (when it is durable,
        # or refused): the broker's window then still bounds the frames waiting for the writer.
        self.metrics.inc("frames_reassembled_total")
        self.writer.submit(Job(Kind.FRAME, device, frame, [delivery], now))

    def expire(self) -> None:
        """Give up on incomplete chunked frames past their timeout (call it every second)."""
        with self._lock:
            self._expire()

    def _expire(self) -> None:
        gone = len(self.reassembler.expire())
        if gone:
            self.metrics.inc("chunked_frames_expired_total", gone)

    def _count_evictions(self) -> None:
        for (device, _inc, session, seq), reason in self.reassembler.take_evicted():
            self.metrics.inc("chunked_frames_evicted_total", reason=reason)
            if reason not in self._evict_logged:
                self._evict_logged.add(reason)
                log.warning(
                    "gave up incomplete chunked frame %s %d-%d to make room (%s limit); the "
                    "device resends it [logged once per limit; see "
                    "chunked_frames_evicted_total]",
                    device, session, seq, "per-device" if reason == "device" else "memory",
                )  # fmt: skip


def _kind_label(topic: str, root: str) -> str:
    parts = topic.split("/") if isinstance(topic, str) else []
    if len(parts) >= 4 and parts[0] == root:
        rest = "/".join(parts[3:])
        if rest in {k.value for k in Kind}:
            return rest
    return "unknown"

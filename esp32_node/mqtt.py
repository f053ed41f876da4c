"""A small blocking MQTT 3.1.1 client for the node (QoS 0/1, will, persistent sessions).

Why not umqtt.simple: a payload here is a list of parts (bytes, memoryview slices, or
``(file, length)`` pairs streamed through one small buffer), so a frame goes from flash to the
socket without ever being concatenated with its protobuf header or held twice in RAM; incoming
messages are queued in ``inbox`` instead of calling back into the application in the middle of a
publish; and every wait has a deadline (umqtt blocks forever on a dead broker). The same file
runs on the ESP32 and under the unix port in the tests.
"""

import select
import socket
import struct
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy only: MicroPython has no typing module
    from typing import Any  # noqa: F401  (used in type comments)

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82
SUBACK = 0x90
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

_STREAM_BUF = 2048


class MQTTError(OSError):
    pass


def _utf8(s):
    return s.encode() if isinstance(s, str) else s


def _part_len(part):
    if isinstance(part, tuple):
        return part[1]
    return len(part)


class MQTTClient:
    def __init__(
        self,
        client_id,
        host,
        port=1883,
        user=None,
        password=None,
        keepalive=60,
        tls=False,
        ca=None,
    ):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.tls = tls
        self.ca = ca
        self.sock = None  # type: Any
        self.poller = None  # type: Any
        self.pid = 0
        self.will = None
        self.inbox = []  # (topic str, payload bytes, retained bool), in arrival order
        self.max_incoming = 64 * 1024  # OTA blocks and commands are far smaller
        self.dropped = 0  # incoming packets skipped for being larger than max_incoming
        self.timeout_ms = 5000
        self._last_io = time.ticks_ms()
        self._stream_buf = None

    def set_last_will(self, topic, payload, retain=True, qos=1):
        self.will = (topic, payload, retain, qos)

    # --- low-level I/O ------------------------------------------------------------------

    def _write(self, buf):
        mv = memoryview(buf)
        while len(mv):
            n = self.sock.write(mv)
            if n is None or n <= 0:
                raise MQTTError("socket write failed")
            mv = mv[n:]
        self._last_io = time.ticks_ms()

    def _read_into(self, mv):
        got = 0
        while got < len(mv):
            n = self.sock.readinto(mv[got:])
            if not n:
                raise MQTTError("connection closed by broker")
            got += n
        return got

    def _read(self, n):
        buf = bytearray(n)
        if n:
            self._read_into(memoryview(buf))
        return buf

    def _read_remaining_length(self):
        n = 0
        shift = 0
        while True:
            b = self._read(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
            if shift > 21:
                raise MQTTError("bad remaining length")

    @staticmethod
    def _remaining_length(buf, n):
        while True:
            b = n & 0x7F
            n >>= 7
            buf.append(b | 0x80 if n else b)
            if not n:
                return buf

    def _next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    # --- session ------------------------------------------------------------------------

    def connect(self, clean_session=False, timeout_ms=10000):
        """Connect and return the broker's session-present flag."""
        self.timeout_ms = timeout_ms
        addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        sock = socket.socket()  # type: Any
        sock.settimeout(timeout_ms / 1000)
        try:
            # Nagle + delayed ACK would hold each small write ~40 ms: a QoS 1 exchange per
            # message makes that the dominant cost of a wake (lwIP and Linux both use 6/1)
            sock.setsockopt(getattr(socket, "IPPROTO_TCP", 6), getattr(socket, "TCP_NODELAY", 1), 1)
        except (OSError, AttributeError):
            pass
        try:
            sock.connect(addr)
            if self.tls:
                sock = self._wrap_tls(sock)
        except Exception as e:
            sock.close()
            if isinstance(e, OSError):
                raise
            raise MQTTError("TLS: %s" % str(e).strip())  # mbedtls reports ValueError
        self.sock = sock
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        flags = 0 if not clean_session else 0x02
        body = bytearray(b"\x00\x04MQTT\x04")
        payload = bytearray()
        self._put_str(payload, self.client_id)
        if self.will:
            topic, msg, retain, qos = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            self._put_str(payload, topic)
            payload.extend(struct.pack("!H", len(msg)))
            payload.extend(msg)
        if self.user is not None:
            flags |= 0x80
            self._put_str(payload, self.user)
            if self.password is not None:
                flags |= 0x40
                self._put_str(payload, self.password)
        body.append(flags)
        body.extend(struct.pack("!H", self.keepalive))
        body.extend(payload)
        pkt = bytearray([CONNECT])
        self._remaining_length(pkt, len(body))
        pkt.extend(body)
        self._write(pkt)
        typ, data = self._read_packet(timeout_ms)
        if typ != CONNACK or len(data) != 2:
            raise MQTTError("expected CONNACK")
        if data[1] != 0:
            raise MQTTError("connection refused, code %d" % data[1])
        return bool(data[0] & 1)

    def _wrap_tls(self, sock):
        """TLS with the broker's certificate checked against ``ca`` (DER) when one was
        provisioned; without a CA the link is encrypted but the broker is not authenticated."""
        import ssl

        if not hasattr(ssl, "SSLContext"):  # MicroPython < 1.22: no CA check possible
            return ssl.wrap_socket(sock, server_hostname=self.host)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.ca:
            ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # stubs lack it
            ctx.load_verify_locations(cadata=self.ca)
        else:
            ctx.verify_mode = ssl.CERT_NONE  # type: ignore[attr-defined]
        return ctx.wrap_socket(sock, server_hostname=self.host)

    @staticmethod
    def _put_str(buf, s):
        raw = _utf8(s)
        buf.extend(struct.pack("!H", len(raw)))
        buf.extend(raw)

    def disconnect(self):
        if self.sock is None:
            return
        try:
            self._write(b"\xe0\x00")
        except OSError:
            pass
        self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    @property
    def connected(self):
        return self.sock is not None

    # --- publish / subscribe ------------------------------------------------------------

    def publish(self, topic, parts, retain=False, qos=1):
        """Publish the concatenation of ``parts`` without concatenating them.

        A part is bytes-like (memoryview slices are written as they are) or ``(file, length)``:
        ``length`` bytes read from the file's current position through one small buffer. With
        QoS 1 this returns after the PUBACK; messages arriving meanwhile go to ``inbox``.
        """
        if isinstance(parts, (bytes, bytearray, memoryview)):
            parts = (parts,)
        raw_topic = _utf8(topic)
        size = 2 + len(raw_topic) + (2 if qos else 0)
        for part in parts:
            size += _part_len(part)
        hdr = bytearray([PUBLISH | (qos << 1) | (1 if retain else 0)])
        self._remaining_length(hdr, size)
        hdr.extend(struct.pack("!H", len(raw_topic)))
        hdr.extend(raw_topic)
        pid = 0
        if qos:
            pid = self._next_pid()
            hdr.extend(struct.pack("!H", pid))
        small = size < 1024
        for part in parts:
            small = small and not isinstance(part, tuple)
        if small:  # one segment for the usual small message
            for part in parts:
                hdr.extend(part)
            parts = ()
        self._write(hdr)
        for part in parts:
            if isinstance(part, tuple):
                self._stream_file(part[0], part[1])
            elif len(part):
                self._write(part)
        if qos:
            self._wait_for(PUBACK, pid)

    def _stream_file(self, f, length):
        if self._stream_buf is None:
            self._stream_buf = bytearray(_STREAM_BUF)
        mv = memoryview(self._stream_buf)
        while length > 0:
            n = f.readinto(mv[: min(length, _STREAM_BUF)])
            if not n:
                raise MQTTError("spool file shorter than announced")
            self._write(mv[:n])
            length -= n

    def subscribe(self, topics, qos=1):
        """Subscribe to a list of topic filters in one SUBSCRIBE; waits for the SUBACK."""
        pid = self._next_pid()
        body = bytearray(struct.pack("!H", pid))
        for t in topics:
            self._put_str(body, t)
            body.append(qos)
        pkt = bytearray([SUBSCRIBE])
        self._remaining_length(pkt, len(body))
        pkt.extend(body)
        self._write(pkt)
        data = self._wait_for(SUBACK, pid)
        for code in data[2:]:
            if code == 0x80:
                raise MQTTError("subscription refused")

    def ping(self, timeout_ms=None):
        """PINGREQ and wait for PINGRESP: everything the broker sent before is in ``inbox``."""
        self._write(b"\xc0\x00")
        self._wait_for(PINGRESP, None, timeout_ms)

    def poll(self, timeout_ms=0):
        """Wait up to ``timeout_ms`` for a packet, then handle everything already readable;
        True when something arrived (returns early: callers loop on their own deadline)."""
        got = False
        wait = timeout_ms
        while self.poller.poll(wait):
            typ, data = self._read_packet(self.timeout_ms)
            self._handle(typ, data)
            got = True
            wait = 0
        if time.ticks_diff(time.ticks_ms(), self._last_io) > self.keepalive * 500:
            self.ping()
        return got

    # --- incoming -----------------------------------------------------------------------

    def _read_packet(self, timeout_ms):
        if not self.poller.poll(timeout_ms):
            raise MQTTError("timed out waiting for the broker")
        first = self._read(1)[0]
        n = self._read_remaining_length()
        if n > self.max_incoming:
            return self._drop_oversize(first, n)
        return first, self._read(n)

    def _drop_oversize(self, first, n):
        """Skip a packet too big for the heap instead of dying on MemoryError at every wake
        (the broker would redeliver the same unacked message forever); a QoS 1 PUBLISH is
        acked so it goes away, and counted in ``dropped``."""
        head = b""
        if first & 0xF0 == PUBLISH:
            tlen = struct.unpack("!H", self._read(2))[0]
            head = self._read(tlen + (2 if first & 0x06 else 0))
            n -= 2 + len(head)
        buf = memoryview(bytearray(512))
        while n > 0:
            n -= self._read_into(buf[: min(n, 512)])
        if head and first & 0x06:
            self._write(bytearray([PUBACK, 2]) + head[-2:])
        self.dropped += 1
        return 0, b""

    def _wait_for(self, typ, pid, timeout_ms=None):
        if timeout_ms is None:
            timeout_ms = self.timeout_ms
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                raise MQTTError("timed out waiting for packet 0x%02x" % typ)
            got, data = self._read_packet(left)
            if got & 0xF0 == typ & 0xF0 and (
                pid is None or struct.unpack("!H", data[:2])[0] == pid
            ):
                return data
            self._handle(got, data)

    def _handle(self, first, data):
        kind = first & 0xF0
        if kind == PUBLISH:
            qos = (first >> 1) & 3
            tlen = struct.unpack("!H", data[:2])[0]
            topic = str(bytes(data[2 : 2 + tlen]), "utf-8")
            pos = 2 + tlen
            if qos:
                pid = data[pos : pos + 2]
                pos += 2
                # Acked on receipt: the application handles the inbox within this wake, and a
                # command id is idempotent, so a lost message is worse than a repeated one.
                self._write(bytearray([PUBACK, 2]) + pid)
            self.inbox.append((topic, bytes(data[pos:]), bool(first & 1)))
        # stray PUBACK/SUBACK/PINGRESP of an earlier timed-out wait: ignore

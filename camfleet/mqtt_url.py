"""Broker addresses as users write them: ``mqtt://[user[:password]@]host[:port]``.

``mqtts://`` means TLS (default port 8883); a bare ``host[:port]`` means ``mqtt://``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from camfleet.errors import UserError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, text: str) -> BrokerUrl:
        """Parse a broker address; raise UserError naming what is wrong."""
        raw = text.strip()
        if "://" not in raw:
            raw = "mqtt://" + raw
        try:
            parts = urlsplit(raw)
            port = parts.port
        except ValueError as exc:
            raise UserError(f"invalid broker address {text!r}: {exc}") from None
        if parts.scheme not in DEFAULT_PORTS:
            raise UserError(f"invalid broker address {text!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise UserError(f"invalid broker address {text!r}: no host")
        if parts.path not in ("", "/"):
            raise UserError(f"invalid broker address {text!r}: unexpected path {parts.path!r}")
        return cls(
            host=parts.hostname,
            port=port or DEFAULT_PORTS[parts.scheme],
            tls=parts.scheme == "mqtts",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:
        auth = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{self.host}:{self.port}"


def redacted(text: str) -> str:
    """``text`` as logs and banners show it: the password left out (``mqtt://user@host:port``).

    The one redaction of broker addresses (it is :meth:`BrokerUrl.__str__`); text that does not
    parse is shown as ``<invalid broker address>`` rather than echoed with what it may hold.
    """
    try:
        return str(BrokerUrl.parse(text))
    except UserError:
        return "<invalid broker address>"

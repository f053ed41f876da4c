"""Where the ``camfleet`` client commands find the API token on the controller's machine.

``camfleet controller run`` saves its token for the user who runs it in
``$XDG_CONFIG_HOME/camfleet/tokens/HOST-PORT`` (``~/.config/...`` by default, mode 600), one file
per API address, so ``camfleet capture ...`` typed on that machine works without ``--token`` and
two controllers on one machine (the demo and a real one) do not take each other's token.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from camfleet.atomic import atomic_write

# Addresses a server binds to "everywhere" or by name: a client on this machine reaches them on
# 127.0.0.1, so both sides name the file after that.
_LOCAL = {"", "0.0.0.0", "::", "[::]", "localhost", "127.0.0.1"}


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "camfleet"


def token_file(host: str, port: int) -> Path:
    host = "127.0.0.1" if host in _LOCAL else host.strip("[]")
    return config_dir() / "tokens" / f"{host}-{port}"


def token_file_for_api(api: str) -> Path:
    parts = urlsplit(api)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return token_file(parts.hostname or "", port)


def save_token(host: str, port: int, token: str) -> Path:
    """Write ``token`` for the API at host:port, readable only by this user; return the path."""
    path = token_file(host, port)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A client reading meanwhile sees the old token or the new, never half of one.
    atomic_write(path, (token + "\n").encode(), mode=0o600)
    return path


def load_token(api: str) -> tuple[str, Path] | None:
    """The token saved for ``api`` and the file it came from, or None."""
    path = token_file_for_api(api)
    try:
        token = path.read_text().strip()
    except OSError:
        return None
    return (token, path) if token else None

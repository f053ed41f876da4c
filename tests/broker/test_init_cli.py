"""`camfleet broker init` / `broker run --config` / `broker url` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from camfleet.mosquitto import free_port
from camfleet.mqtt_url import BrokerUrl
from tests.broker.peer import Peer

CAMFLEET = [sys.executable, "-m", "camfleet"]


def camfleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CAMFLEET, *args], capture_output=True, text=True, timeout=120)


@contextmanager
def running(config: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [*CAMFLEET, "broker", "run", "--config", str(config), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"broker listening on mqtt://127.0.0.1:{port}"), (
            line + proc.stderr.read() if proc.stderr else line
        )
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


def test_dev_profile_is_labelled_loopback_and_anonymous(tmp_path: Path) -> None:
    d = tmp_path / "dev"
    out = camfleet("broker", "init", str(d), "--profile", "dev")
    assert out.returncode == 0, out.stderr
    assert "anonymous clients allowed, loopback only" in out.stdout
    conf = (d / "mosquitto.conf").read_text()
    assert "# DEV PROFILE" in conf and "allow_anonymous true" in conf
    assert "listener 1883 127.0.0.1" in conf
    port = free_port()
    with running(d, port):
        assert Peer(port).connect()


def test_prod_profile_refuses_anonymous_and_serves_the_controller_identity(tmp_path: Path) -> None:
    d = tmp_path / "prod"
    tls_port, cert_port = free_port(), free_port()
    out = camfleet("broker", "init", str(d), "--tls-port", str(tls_port),
                   "--cert-port", str(cert_port), "--websockets", "off")  # fmt: skip
    assert out.returncode == 0, out.stderr
    conf = (d / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "mosquitto_dynamic_security.so" in conf
    assert (d / "secrets.json").stat().st_mode & 0o077 == 0
    assert (d / "tls" / "ca.key").stat().st_mode & 0o077 == 0

    again = camfleet("broker", "init", str(d))
    assert again.returncode != 0
    assert again.stderr.strip().splitlines() == [
        f"camfleet: error: {d} already holds a broker configuration; choose another directory "
        "or pass --force (new identities: enrolled devices must be added again)"
    ]

    port = free_port()
    with running(d, port) as proc:
        assert proc.stdout is not None
        # The device listeners it opened, on the lines after the first.
        assert [proc.stdout.readline(), proc.stdout.readline()] == [
            f"       and on port {tls_port} (MQTT over TLS)\n",
            f"       and on port {cert_port} (MQTT over TLS, client certificate as identity)\n",
        ]
        assert not Peer(port).connect()
        url = BrokerUrl.parse(camfleet("broker", "url", "--config", str(d)).stdout.strip())
        assert url.username == "_controller"
        assert Peer(port, url.username, url.password).connect()
        tls = BrokerUrl.parse(camfleet("broker", "url", "--config", str(d), "--tls").stdout)
        assert tls.tls and tls.port == tls_port
        peer = Peer(tls.port, tls.username, tls.password, ca_file=str(d / "tls/ca.pem"), tls=True)
        assert peer.connect()


def test_not_a_broker_directory_is_one_line(tmp_path: Path) -> None:
    out = camfleet("broker", "run", "--config", str(tmp_path))
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        f"camfleet: error: {tmp_path} is not a broker directory (no camfleet-broker.json): "
        f"run `camfleet broker init {tmp_path}` first"
    ]

"""MQTT over TLS: the node checks the broker's certificate against the CA in NVS (mqtt_ca)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from camfleet.mosquitto import Mosquitto, free_port
from camfleet.testing.esp32_receiver import Receiver
from tests.esp32.conftest import DEVICE_KEY


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)  # fmt: skip
    _openssl("x509", "-in", f"{name}.pem", "-outform", "DER", "-out", f"{name}.der", cwd=d)


@pytest.fixture
def tls_broker(tmp_path: Path):
    d = tmp_path / "pki"
    d.mkdir()
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=d)  # fmt: skip
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-days", "2",
             "-CAcreateserial", "-extfile", "san.cnf", "-out", "server.pem", cwd=d)  # fmt: skip
    tls_port = free_port()
    broker = Mosquitto(
        tmp_path / "mosquitto",
        extra_config=(
            f"listener {tls_port} 127.0.0.1\n"
            f"cafile {d / 'ca.pem'}\ncertfile {d / 'server.pem'}\nkeyfile {d / 'server.key'}\n"
        ),
    )
    broker.start()
    yield broker, tls_port, d
    broker.kill()


def test_node_publishes_over_tls_and_refuses_a_broker_it_cannot_verify(tls_broker, make_device):
    broker, tls_port, pki = tls_broker
    dev = make_device(
        broker,
        extra_nvs={"mqtt_port": tls_port, "mqtt_tls": 1, "mqtt_ca": (pki / "ca.der").read_bytes()},
    )
    rx = Receiver(broker.host, broker.port, dev.device_id, device_key=DEVICE_KEY).start()  # plain
    try:
        woke = dev.run_wake()
        assert woke.ended == "deepsleep", woke.output
        assert (1, 1) in rx.frames
        assert dev.spool_files() == []

        dev.write_nvs({"mqtt_ca": (pki / "other-ca.der").read_bytes()})
        woke = dev.run_wake()
        assert woke.ended == "deepsleep", woke.output
        assert "broker unreachable: TLS" in woke.output  # certificate not signed by its CA
        assert len(dev.spool_files()) == 1
        assert (2, 1) not in rx.frames
    finally:
        rx.close()

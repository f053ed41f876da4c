"""The prod profile against a real mosquitto: every probe an attacker would try is refused.

Denied publishes "succeed" for the sender (MQTT 3.1.1 has no way to say no), so each one is
proven by a subscriber allowed to see the topic: the sender then publishes a fence message on a
topic it may use, and the fence arriving first-and-alone proves the forged one was dropped
(mosquitto keeps one publisher's order towards one subscriber).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from camfleet.broker_config import dynsec
from camfleet.broker_config.admin import DynsecAdmin
from camfleet.broker_config.profiles import BrokerDir, ConfiguredMosquitto
from tests.broker.conftest import start_prod_broker
from tests.broker.peer import Peer

ROOT = "camfleet"


@dataclass
class Secure:
    broker: ConfiguredMosquitto
    dir: BrokerDir
    passwords: dict[str, str]

    def service(self, name: str) -> Peer:
        url = self.dir.url(name)
        return self.peer(url.username, url.password)

    def peer(self, user: str | None, password: str | None, client_id: str | None = None) -> Peer:
        return Peer(self.broker.port, user, password, client_id)


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Secure]:
    broker = start_prod_broker(tmp_path / "broker")
    bdir = broker.broker_dir
    passwords = {"dev-a": "pw-a-0123456789", "dev-b": "pw-b-0123456789"}
    with DynsecAdmin(bdir.url("admin")) as admin:
        for dev, pw in passwords.items():
            admin.run(dynsec.add_device_commands(dev, pw, dev, ("yard",), ROOT))
    yield Secure(broker, bdir, passwords)
    broker.kill()


def t(dev: str, kind: str) -> str:
    return f"{ROOT}/v1/{dev}/{kind}"


def test_every_probe_is_refused_and_the_legitimate_paths_work(secure: Secure) -> None:
    refused: list[str] = []
    accepted: list[str] = []

    def probe(name: str, was_refused: bool) -> None:
        (refused if was_refused else accepted).append(name)

    # --- who may connect ------------------------------------------------------------------
    probe("anonymous", not secure.peer(None, None).connect())
    probe("wrong password", not secure.peer("dev-a", "guess", "dev-a").connect())
    probe("unknown user", not secure.peer("dev-z", "pw-a-0123456789", "dev-z").connect())
    # A's password under B's client id: would take over (and empty) B's persistent session.
    probe(
        "A as B's client id", not secure.peer("dev-a", secure.passwords["dev-a"], "dev-b").connect()
    )

    a = secure.peer("dev-a", secure.passwords["dev-a"], "dev-a")
    b = secure.peer("dev-b", secure.passwords["dev-b"], "dev-b")
    ctl = secure.service("controller")
    dash = secure.service("dashboard")
    for p in (a, b, ctl, dash):
        assert p.connect(), p.refused

    # --- what A may subscribe to -----------------------------------------------------------
    for kind in ("frame", "receipt", "cmd", "desired", "ota/block", "state"):
        probe(f"A subscribes to B's {kind}", not a.subscribe(t("dev-b", kind)))
    probe("A subscribes to everything", not a.subscribe(f"{ROOT}/#"))
    probe("A subscribes to every cmd", not a.subscribe(f"{ROOT}/v1/+/cmd"))
    probe("A subscribes to $CONTROL", not a.subscribe("$CONTROL/#"))
    for kind in ("cmd", "receipt", "desired", "ota/block"):
        assert a.subscribe(t("dev-a", kind)), kind
        assert b.subscribe(t("dev-b", kind)), kind
    assert a.subscribe(f"{ROOT}/v1/_group/yard/cmd")
    assert a.subscribe(f"{ROOT}/v1/_controller/state")
    assert ctl.subscribe(f"{ROOT}/#")
    assert dash.subscribe(f"{ROOT}/#")

    # --- the controller reaches each device, and only that device --------------------------
    ctl.publish(t("dev-b", "receipt"), b"for-b")
    ctl.publish(t("dev-a", "cmd"), b"for-a")
    assert b.next() == (t("dev-b", "receipt"), b"for-b")
    assert a.next() == (t("dev-a", "cmd"), b"for-a")  # B's receipt never reached A
    assert dash.next() == (t("dev-b", "receipt"), b"for-b")  # a dashboard reads everything
    assert [ctl.next(), ctl.next()] == [
        (t("dev-b", "receipt"), b"for-b"),
        (t("dev-a", "cmd"), b"for-a"),
    ]

    # --- what A and a dashboard may publish: each forged publish costs the connection ----------
    forged = [t("dev-b", k) for k in ("frame", "chunk", "state", "telemetry", "event", "ack")]
    forged += [t("dev-b", "receipt"), t("dev-b", "cmd"), t("dev-b", "desired")]
    forged += [t("dev-a", "receipt"), t("dev-a", "cmd"), t("dev-a", "desired")]
    forged += [f"{ROOT}/v1/_controller/state", f"{ROOT}/v1/_group/yard/cmd", "camfleet/jpeg/dev-b"]
    forged += ["homeassistant/camera/camfleet_dev_b/config"]
    a.close()
    for topic in forged:
        forger = secure.peer("dev-a", secure.passwords["dev-a"], "dev-a")
        assert forger.connect()
        probe(f"A publishes {topic}", forger.forge(topic))
        forger.close()
    dash.close()
    dashboard_url = secure.dir.url("dashboard")
    for topic in (t("dev-b", "receipt"), t("dev-b", "cmd"), f"{ROOT}/v1/_controller/state"):
        forger = secure.peer(dashboard_url.username, dashboard_url.password)
        assert forger.connect()
        probe(f"dashboard publishes {topic}", forger.forge(topic))
        forger.close()
    # Nothing forged was delivered: the fences are the first thing B and the controller see.
    ctl.publish(t("dev-b", "cmd"), b"fence")
    assert b.next() == (t("dev-b", "cmd"), b"fence")
    assert ctl.next() == (t("dev-b", "cmd"), b"fence")

    # --- TLS --------------------------------------------------------------------------------
    tls_port = secure.dir.settings.tls_port
    assert tls_port is not None
    no_ca = Peer(tls_port, "dev-a", secure.passwords["dev-a"], "dev-a", tls=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        no_ca.connect()
    refused.append("TLS client without the CA")
    with_ca = Peer(
        tls_port, "dev-a", secure.passwords["dev-a"], "dev-a", str(secure.dir.ca_file), tls=True
    )
    assert with_ca.connect(), with_ca.refused
    with_ca.close()

    for p in (b, ctl):
        p.close()
    print(f"security probes: {len(refused)}/{len(refused) + len(accepted)} refused")
    assert accepted == [], accepted


def test_a_packet_over_the_size_limit_is_refused_without_disturbing_others(secure: Secure) -> None:
    a = secure.peer("dev-a", secure.passwords["dev-a"], "dev-a")
    b = secure.peer("dev-b", secure.passwords["dev-b"], "dev-b")
    ctl = secure.service("controller")
    for p in (a, b, ctl):
        assert p.connect(), p.refused
    assert ctl.subscribe(f"{ROOT}/#")
    limit = 8 * 1024 * 1024  # message_size_limit in broker_config/common.conf
    assert a.forge(t("dev-a", "frame"), b"x" * (limit + 1))  # refused: connection closed
    b.publish(t("dev-b", "frame"), b"b-ok")
    assert ctl.next() == (t("dev-b", "frame"), b"b-ok")
    a.close()
    a = secure.peer("dev-a", secure.passwords["dev-a"], "dev-a")
    assert a.connect(), a.refused
    a.publish(t("dev-a", "frame"), b"x" * limit)
    topic, payload = ctl.next()
    assert (topic, len(payload)) == (t("dev-a", "frame"), limit)
    assert ctl.messages.empty()
    for p in (a, b, ctl):
        p.close()

"""`camfleet device add/rm` on a real prod broker with a real edge agent."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from camfleet.broker_config.profiles import ConfiguredMosquitto, url_with_password
from camfleet.controller.device_keys import registry_keys
from camfleet.edge.agent import EdgeAgent
from camfleet.edge.config import config_from_dict
from camfleet.enrol import add_device, remove_device
from camfleet.esp32_node.tools.provision import read_nvs_image
from camfleet.mosquitto import free_port
from camfleet.proto import codec, topics
from camfleet.proto.topics import Kind
from camfleet.proto.v1.state_pb2 import PRESENCE_ONLINE
from camfleet.testing.device_receiver import DeviceReceiver
from tests.broker.conftest import key_of
from tests.broker.peer import Peer
from tests.edge.conftest import RunningAgent


def device(
    tmp_path: Path, broker: ConfiguredMosquitto, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camfleet", "device", *args,
         "--broker-config", str(broker.workdir), "--data", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def registered(data: Path, device_id: str) -> tuple[str, list[str]]:
    """The device's state and groups in the controller's registry, as the API derives them."""
    from camfleet.controller import registry

    with registry_keys(data) as keys, keys.db.read() as tx:
        row = tx.one("SELECT * FROM devices WHERE device_id = ?", (device_id,))
        assert row is not None, f"{device_id} is not in the registry"
        assert row["first_seen_ms"] == row["last_seen_ms"] == 0
        return registry.derive_state(row, 10**13, 60_000, 60_000), registry.groups_of(tx, device_id)


def agent_config(tmp_path: Path, folder: Path) -> Any:
    data = tomllib.loads((folder / "edge.toml").read_text())
    data["broker"].update(reconnect_min_s=0.05, reconnect_max_s=0.3, keepalive_s=5)
    data["camera"] = {"backend": "synthetic", "width": 160, "height": 120}
    data["agent"] = {"state_dir": str(tmp_path / "agent-state"), "telemetry_interval_s": 0}
    return config_from_dict(data, source="test", base_dir=folder)


def test_rm_drops_a_connected_agent_for_good_and_re_adding_loses_no_spooled_frame(
    tmp_path: Path, prod: ConfiguredMosquitto
) -> None:
    out = tmp_path / "devices"
    add = device(tmp_path, prod, "add", "yard-cam", "--group", "yard", "--board", "usb",
                 "--out", str(out), "--broker-host", "127.0.0.1")  # fmt: skip
    assert add.returncode == 0, add.stderr
    folder = out / "yard-cam"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "edge.toml").stat().st_mode) == 0o600
    key = key_of(tmp_path / "data", "yard-cam")
    assert key is not None and len(key) == 32
    assert "broker identity yard-cam (password)" in add.stdout
    assert registered(tmp_path / "data", "yard-cam") == ("enrolled", ["yard"])

    ctl = prod.broker_dir.url("controller")
    rx = DeviceReceiver(prod.host, prod.port, "yard-cam", username=ctl.username,
                        password=ctl.password, device_key=key).start()  # fmt: skip
    running = RunningAgent(agent_config(tmp_path, folder))
    try:
        agent = running.agent
        rx.wait_for(lambda got: len(got.states) > 0, 15)  # its birth: connected
        first = agent.capture()
        rx.wait_for(lambda got: (first.session, first.seq) in got.frames, 15)
        assert agent.wait_until(lambda: agent.spool.depth == 0, 15)  # receipted

        rm = device(tmp_path, prod, "rm", "yard-cam")
        assert rm.returncode == 0, rm.stderr
        assert key_of(tmp_path / "data", "yard-cam") is None
        with agent.conn.changed:
            assert agent.conn.changed.wait_for(lambda: not agent.conn.connected.is_set(), 10)
            # and it cannot come back: each attempt is refused
            assert agent.conn.changed.wait_for(
                lambda: "Not authorized" in agent.conn.last_error, 10
            ), agent.conn.last_error
        spooled = agent.capture()  # while revoked
        assert agent.spool.depth == 1
        assert not agent.conn.connected.is_set()
    finally:
        running.stop()

    add = device(tmp_path, prod, "add", "yard-cam", "--group", "yard", "--board", "usb",
                 "--out", str(out), "--broker-host", "127.0.0.1")  # fmt: skip
    assert add.returncode == 0, add.stderr
    new_key = key_of(tmp_path / "data", "yard-cam")
    assert new_key is not None and new_key != key  # re-enrolled: what the old key signed is void
    rx.device_key = new_key  # the controller stand-in signs with the new key
    running = RunningAgent(agent_config(tmp_path, folder))  # the new credentials
    try:
        agent = running.agent
        rx.wait_for(lambda got: (spooled.session, spooled.seq) in got.frames, 20)
        assert agent.wait_until(lambda: agent.spool.depth == 0, 60)
    finally:
        running.stop()
        rx.close()


def test_add_writes_an_esp32_nvs_image_with_the_enrolled_credentials(
    tmp_path: Path, prod: ConfiguredMosquitto
) -> None:
    out = tmp_path / "devices"
    add = device(tmp_path, prod, "add", "gate-cam", "--board", "esp32-cam", "--out", str(out),
                 "--broker-host", "127.0.0.1", "--wifi-ssid", "lab")  # fmt: skip
    assert add.returncode == 0, add.stderr
    nvs = read_nvs_image((out / "gate-cam" / "nvs.bin").read_bytes())
    assert nvs["device_id"] == b"gate-cam" and nvs["mqtt_tls"] == 1
    assert nvs["mqtt_port"] == prod.broker_dir.settings.tls_port
    assert nvs["hmac_key"] == key_of(tmp_path / "data", "gate-cam")
    assert nvs["mqtt_ca"] == (prod.workdir / "tls" / "ca.der").read_bytes()
    # The identity works with the node's client id (its device id), and only with it.
    password = nvs["mqtt_pass"].decode()  # type: ignore[union-attr]
    assert Peer(prod.port, "gate-cam", password, "gate-cam").connect()
    assert not Peer(prod.port, "gate-cam", password, "camfleet-edge-gate-cam").connect()


@pytest.mark.parametrize("bad", ["Cam", "a/b", "a+b", "a#b", "_cam", "a\x00b", "x" * 65, ""])
def test_a_bad_device_id_is_one_line(tmp_path: Path, prod: ConfiguredMosquitto, bad: str) -> None:
    if "\x00" in bad:  # cannot travel in argv: the function the CLI calls
        from camfleet.enrol import checked_device_id
        from camfleet.errors import UserError

        with pytest.raises(UserError, match="invalid device id"):
            checked_device_id(bad)
        return
    out = device(tmp_path, prod, "add", bad, "--out", str(tmp_path / "devices"))
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("camfleet: error: invalid device id"), lines
    assert not (tmp_path / "devices").exists()


def test_the_controller_signs_what_an_enrolled_agent_acts_on(
    tmp_path: Path, prod: ConfiguredMosquitto
) -> None:
    """Real controller + prod broker + enrolled edge agent: the agent (which refuses anything
    unsigned) deletes receipted frames, obeys commands and applies desired config."""
    from camfleet.proto.v1 import config_pb2
    from camfleet.testing.controller_process import Waiter, start_controller

    out = tmp_path / "devices"
    with registry_keys(tmp_path / "data") as keys:
        add_device(prod.broker_dir, keys, "porch-cam", (), "usb", out, "127.0.0.1")
    api = f"http://127.0.0.1:{free_port()}"
    ctl = start_controller(
        url_with_password(prod.broker_dir.url("controller")), tmp_path / "data", http=api[7:]
    )

    def state() -> str:
        with ctl.db.read() as tx:
            row = tx.one("SELECT * FROM devices WHERE device_id = 'porch-cam'")
        return ctl.device_state(row) if row else "missing"

    assert state() == "enrolled"  # listed before it ever connected (capture needs no flag)
    agent = EdgeAgent(agent_config(tmp_path, out / "porch-cam"))
    agent.start()
    try:
        assert agent.config.device.key == key_of(tmp_path / "data", "porch-cam")
        assert agent.conn.connected.wait(60), agent.conn.last_error
        assert Waiter(ctl).wait_for(lambda: state() == "online", 60)  # its first birth
        frame = agent.capture()
        assert agent.wait_until(lambda: (frame.session, frame.seq) not in agent.spool, 60)
        ctl.commands.create("capture", {}, device_id="porch-cam")
        assert agent.wait_until(lambda: agent.counters["frames"] == 2, 60)
        ctl.desired.set_layer("device", "porch-cam", config_pb2.DeviceConfig(spool_max_frames=50))
        # Applying desired config notifies nothing the test could wait on; the controller's
        # waiter wakes with every batch (the agent's reported config is one).
        assert Waiter(ctl).wait_for(lambda: agent.effective.spool_max_frames == 50, 20)
        assert agent.counters["unsigned_refused"] == 0

        # Revoked: the broker drops it without publishing its will, yet `camfleet devices`
        # must not show it online for ever.
        assert devices_state(api, tmp_path / "data", "porch-cam") == "online"
        rm = device(tmp_path, prod, "rm", "porch-cam")
        assert rm.returncode == 0, rm.stderr
        assert devices_state(api, tmp_path / "data", "porch-cam") == "offline"
        # The birth of the dropped connection stays retained, and a controller that subscribes
        # again (a restart) gets it: it must not bring the revoked device back online.
        ident = prod.broker_dir.url("controller")
        peer = Peer(prod.port, ident.username, ident.password)
        assert peer.connect() and peer.subscribe(topics.device_topic("porch-cam", Kind.STATE))
        topic, birth = peer.next(60)
        assert codec.decode_message(topic, birth)[1].message.presence == PRESENCE_ONLINE
        stale_before = ctl.metrics.get("states_total", outcome="stale")
        peer.publish(topic, birth)
        peer.close()
        stale = lambda: ctl.metrics.get("states_total", outcome="stale") > stale_before  # noqa: E731
        assert Waiter(ctl).wait_for(stale, 60)
        assert devices_state(api, tmp_path / "data", "porch-cam") == "offline"
    finally:
        agent.stop()
        agent.close()
        ctl.stop()


def devices_state(api: str, data: Path, device_id: str) -> str:
    """The device's state as `camfleet devices --json` shows it."""
    token = (data / "api-token").read_text().strip()
    listed = subprocess.run(
        [sys.executable, "-m", "camfleet", "devices", "--api", api, "--token", token, "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return str(next(d["state"] for d in json.loads(listed.stdout) if d["device_id"] == device_id))


def test_enrolment_and_revocation_survive_a_broker_restart(
    tmp_path: Path, prod: ConfiguredMosquitto
) -> None:
    """The plugin saves its JSON file (it must stay writable by the broker's user)."""
    out = tmp_path / "devices"
    with registry_keys(tmp_path / "data") as keys:
        kept = add_device(prod.broker_dir, keys, "kept-cam", (), "esp32-cam", out)
        gone = add_device(prod.broker_dir, keys, "gone-cam", (), "esp32-cam", out)
        assert remove_device(prod.broker_dir, keys, "gone-cam")
    prod.restart()
    assert Peer(prod.port, "kept-cam", kept.password, "kept-cam").connect()
    assert not Peer(prod.port, "gone-cam", gone.password, "gone-cam").connect()


def test_a_certificate_identity_is_confined_to_its_device_and_revoked_by_rm(
    tmp_path: Path, prod: ConfiguredMosquitto
) -> None:
    """`device add --cert` on the certificate listener (CN = identity): its role applies; no
    certificate or one from another CA is refused; `rm` drops it, and what the certificate can
    still open afterwards (mosquitto 2.0 asks no plugin at connect time on that listener) can
    neither read nor publish anything, even once the same id is enrolled again."""
    from camfleet.broker_config import pki

    out = tmp_path / "devices"
    with registry_keys(tmp_path / "data") as keys:
        e = add_device(prod.broker_dir, keys, "cert-cam", (), "usb", out, cert=True)
        add_device(prod.broker_dir, keys, "other-cam", (), "esp32-cam", out)
    folder = out / "cert-cam"
    assert e.password is None and e.username.startswith("cert-cam.")
    refused = device(tmp_path, prod, "add", "node-cam", "--board", "esp32-cam", "--cert",
                     "--out", str(out))  # fmt: skip
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        "camfleet: error: --cert: the ESP32 node authenticates with a password only (no client "
        "certificate support in its MQTT client yet); enrol esp32-cam boards without --cert"
    ]
    assert stat.S_IMODE((folder / "client.key").stat().st_mode) == 0o600
    config = agent_config(tmp_path, folder)
    assert config.broker.url.username is None and config.broker.cert_file == folder / "client.pem"
    cert_port = prod.broker_dir.settings.cert_port
    assert cert_port is not None
    ca = str(folder / "ca.pem")
    cert = (str(folder / "client.pem"), str(folder / "client.key"))
    frame_topic, cmd_topic = "camfleet/v1/cert-cam/frame", "camfleet/v1/cert-cam/cmd"

    ctl = prod.broker_dir.url("controller")
    watcher = Peer(prod.port, ctl.username, ctl.password)
    assert watcher.connect() and watcher.subscribe("camfleet/v1/+/frame")
    other_password = read_nvs_image((out / "other-cam" / "nvs.bin").read_bytes())["mqtt_pass"]
    other = Peer(prod.port, "other-cam", other_password.decode(), "other-cam")  # type: ignore[union-attr]
    assert other.connect()

    # the device's own topics, and nothing else; another device's client id takes nothing over
    dev = Peer(cert_port, client_id="other-cam", ca_file=ca, cert=cert)
    assert dev.connect(), dev.refused
    assert dev.subscribe(cmd_topic)
    assert not dev.subscribe("camfleet/v1/other-cam/cmd")
    dev.publish(frame_topic, b"frame-1")
    assert watcher.next() == (frame_topic, b"frame-1")
    assert not other.disconnected.is_set()
    assert dev.forge("camfleet/v1/other-cam/frame")

    # no certificate; a certificate of another CA with the same CN
    assert not Peer(cert_port, client_id="cert-cam", ca_file=ca, tls=True).connect()
    (tmp_path / "rogue").mkdir()
    pki.make_ca(tmp_path / "rogue")
    pki.issue(tmp_path / "rogue", "client", e.username, [], server=False)
    rogue = (str(tmp_path / "rogue" / "client.pem"), str(tmp_path / "rogue" / "client.key"))
    assert not Peer(cert_port, client_id="cert-cam", ca_file=ca, cert=rogue).connect()

    live = Peer(cert_port, ca_file=ca, cert=cert)
    assert live.connect() and live.subscribe(cmd_topic)
    with registry_keys(tmp_path / "data") as keys:
        assert remove_device(prod.broker_dir, keys, "cert-cam")
        assert live.disconnected.wait(10)  # dropped at once
        revoked = Peer(cert_port, ca_file=ca, cert=cert)
        revoked.connect()
        assert not revoked.subscribe(cmd_topic)
        assert revoked.forge(frame_topic, b"after rm")
        # enrolled again (a new certificate, a new identity): the old certificate stays void
        add_device(prod.broker_dir, keys, "cert-cam", (), "usb", tmp_path / "again", cert=True)
    again = Peer(cert_port, ca_file=ca, cert=cert)
    again.connect()
    assert not again.subscribe(cmd_topic)
    assert again.forge(frame_topic, b"after re-add")
    new_cert = tmp_path / "again" / "cert-cam"
    fresh = Peer(
        cert_port, ca_file=ca, cert=(str(new_cert / "client.pem"), str(new_cert / "client.key"))
    )
    assert fresh.connect() and fresh.subscribe(cmd_topic)
    fresh.publish(frame_topic, b"frame-2")
    assert watcher.next() == (frame_topic, b"frame-2")  # nothing revoked got through before it
    for p in (watcher, other, dev, live, revoked, again, fresh):
        p.close()

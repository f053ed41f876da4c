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
        assert agent.wait_until(lambda: agent.spool.depth == 0, 15)
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
    agent = EdgeAgent(agent_config(tmp_path, out / "porch-cam"))
    agent.start()
    try:
        assert agent.config.device.key == key_of(tmp_path / "data", "porch-cam")
        assert agent.conn.connected.wait(15), agent.conn.last_error
        frame = agent.capture()
        assert agent.wait_until(lambda: (frame.session, frame.seq) not in agent.spool, 20)
        ctl.commands.create("capture", {}, device_id="porch-cam")
        assert agent.wait_until(lambda: agent.counters["frames"] == 2, 20)
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
        # and stays so after a restart, when the broker delivers its retained birth again.
        ctl.stop()
        ctl = start_controller(
            url_with_password(prod.broker_dir.url("controller")), tmp_path / "data", http=api[7:]
        )
        stale = lambda: ctl.metrics.get("states_total", outcome="stale") >= 1  # noqa: E731
        assert Waiter(ctl).wait_for(stale, 20)
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

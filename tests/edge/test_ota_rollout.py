"""Edge-agent self-update through the controller: one real controller process and one real
mosquitto for the module, real edge agent processes (``camfleet edge run``), bundles of this
checkout's own camfleet signed with a real Ed25519 release key, the real CLI against the
controller's HTTP API.

The controller is another process, so its state is observed the way an operator does: through
the API (``ota rollout status --watch`` until the rollout leaves ``running``), and the devices'
births and events through a receiver on the broker.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from camfleet import __version__
from camfleet.api_client import Api
from camfleet.cli import cli
from camfleet.edge import update
from camfleet.mosquitto import Mosquitto, free_port
from camfleet.proto import codec, topics
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import command_pb2, state_pb2
from camfleet.testing.controller_process import ControllerProcess
from camfleet.testing.device_receiver import DeviceReceiver
from tests.edge.bundles import RELEASE, write_bundle

TOKEN = "edge-ota-token"


@dataclass
class Agent:
    device_id: str
    key: bytes
    proc: subprocess.Popen[bytes]
    rx: DeviceReceiver
    state_dir: Path


class Fleet:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.broker = Mosquitto(tmp / "mosquitto")
        self.broker.start()
        port = free_port()
        self.api = f"http://127.0.0.1:{port}"
        self.data = tmp / "data"
        self.controller = ControllerProcess(
            self.broker.host,
            self.broker.port,
            self.data,
            "--http", f"127.0.0.1:{port}",
            "--token", TOKEN,
            "--tick-s", "0.2",
            "--ota-blocks-per-s", "5000",
            "--ota-edge-public-key", update.public_key_text(RELEASE),
        )  # fmt: skip
        self.controller.start()
        self.agents: list[Agent] = []
        # The receivers record what devices send; this records what the controller sends them.
        self.commands: dict[str, list[command_pb2.Command]] = {}
        self.tap = paho.Client(CallbackAPIVersion.VERSION2)
        self.tap.on_message = self._on_command
        self.tap.connect(self.broker.host, self.broker.port)
        self.tap.subscribe(f"{topics.DEFAULT_ROOT}/v1/+/cmd", 1)
        self.tap.loop_start()

    def _on_command(self, client: Any, userdata: Any, msg: Any) -> None:
        device = topics.parse(msg.topic).device_id
        assert device is not None
        cmd = command_pb2.Command.FromString(msg.payload)
        self.commands.setdefault(device, []).append(cmd)

    def close(self) -> None:
        self.tap.loop_stop()
        self.tap.disconnect()
        for a in self.agents:
            if a.proc.poll() is None:
                a.proc.send_signal(signal.SIGTERM)
                a.proc.wait(60)
            a.rx.close()
        self.controller.stop()
        self.broker.kill()

    def cli(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        env = {"CAMFLEET_API": self.api, "CAMFLEET_TOKEN": TOKEN, **(env or {})}
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    def agent(self, name: str) -> Agent:
        return self.agents_online(name)[0]

    def agents_online(self, *names: str) -> list[Agent]:
        """Edge agent processes on the installed version, with device keys the controller
        knows, online and in the controller's registry (started together: each process spends
        most of its start importing)."""
        started = [self._start_agent(name) for name in names]
        for agent in started:
            agent.rx.wait_for(online_on(__version__), timeout=60, what=f"{agent.device_id} online")
            self.wait_known(agent.device_id, __version__)
        return started

    def _start_agent(self, name: str) -> Agent:
        device_id = f"eota-{name}"
        key = hashlib.sha256(device_id.encode()).digest()
        home = self.tmp / device_id
        home.mkdir()
        config = home / "edge.toml"
        config.write_text(
            f"""
[device]
id = "{device_id}"
key = "{key.hex()}"
[broker]
url = "{self.broker.url}"
reconnect_min_s = 0.05
reconnect_max_s = 0.3
[camera]
backend = "synthetic"
width = 160
height = 120
[spool]
fsync = false
[agent]
state_dir = "{home / "state"}"
telemetry_interval_s = 0
update_public_key = "{update.public_key_text(RELEASE)}"
"""
        )
        code, _, err = self.cli("ota", "key", device_id, "--hex", key.hex())
        assert code == 0, err
        rx = DeviceReceiver(self.broker.host, self.broker.port, device_id, receipts=False).start()
        # cwd outside the checkout: `python -m` would otherwise import ./camfleet first
        proc = subprocess.Popen(
            [sys.executable, "-m", "camfleet", "edge", "run", "-c", str(config)],
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=open(home / "agent.log", "ab"),  # noqa: SIM115
        )
        agent = Agent(device_id, key, proc, rx, home / "state")
        self.agents.append(agent)
        return agent

    def wait_known(self, device_id: str, firmware: str) -> None:
        """The controller (another process) has registered the birth: poll its API."""
        api, done = Api(self.api, TOKEN), threading.Event()
        for _ in range(300):
            items = api.json("GET", "/api/v1/devices")["items"]
            if any(d["device_id"] == device_id and d["firmware"] == firmware for d in items):
                return
            done.wait(0.1)
        raise AssertionError(f"controller never registered {device_id} on {firmware}")

    def upload(self, version: str, broken: bool = False) -> tuple[dict[str, Any], bytes]:
        bundle, sig = write_bundle(self.tmp, version, broken=broken)
        code, out, err = self.cli(
            "ota", "upload", str(bundle), "--signature", str(sig), "--version", version, "--json"
        )
        assert code == 0, err
        return json.loads(out), bundle.read_bytes()

    def rollout(self, artifact: str, *devices: str, live: bool = False) -> dict[str, Any]:
        """Create a rollout, follow it with ``status --watch --json`` until it ends (``live``:
        ``status --watch`` as on a terminal, its output kept in ``watched``)."""
        code, out, err = self.cli(
            "ota", "rollout", "create", "--artifact", artifact,
            "--target", "devices:" + ",".join(devices), "--max-failure", "0%",
            "--min-sample", "1", "--device-timeout", "5m", "--json",
        )  # fmt: skip
        assert code == 0, err
        rid = json.loads(out)["id"]
        watch = ("ota", "rollout", "status", rid, "--watch", "--interval", "0.2")
        if live:  # rich draws its bars when it believes stdout is a terminal
            code, out, err = self.cli(*watch, env={"TTY_COMPATIBLE": "1", "COLUMNS": "120"})
            assert code == 0, err
            status = Api(self.api, TOKEN).json("GET", f"/api/v1/ota/rollouts/{rid}")
            return {**status, "watched": out}
        code, out, err = self.cli(*watch, "--json")
        assert code == 0, err
        steps = [json.loads(line) for line in out.splitlines()]
        status = Api(self.api, TOKEN).json("GET", f"/api/v1/ota/rollouts/{rid}")
        return {**status, "watched": steps}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("edge-ota"))
    yield f
    f.close()


def online_on(version: str) -> Any:
    return lambda g: any(
        s.presence == state_pb2.PRESENCE_ONLINE and s.firmware_version == version for s in g.states
    )


def ota_events(rx: DeviceReceiver, phase: str) -> list[Any]:
    return [e for e in rx.got.events if e.type == "ota" and e.ota.phase == phase]


def offers(fleet: Fleet, device_id: str) -> list[command_pb2.OtaOffer]:
    """The distinct offer commands sent to a device (a command republished after a birth, as
    the outbox does for one not yet acknowledged, is the same offer)."""
    by_id = {
        c.id: c.ota_offer for c in fleet.commands.get(device_id, []) if c.HasField("ota_offer")
    }
    return list(by_id.values())


def by_device(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["device_id"]: d for d in status["devices"]}


def fake_esp32_birth(fleet: Fleet, device_id: str) -> None:
    """An ESP32 node's retained birth (platform esp32), as the node publishes it."""
    birth = state_pb2.DeviceState(
        presence=state_pb2.PRESENCE_ONLINE,
        session=1,
        firmware_version="1.0.0",
        platform="esp32",
        timestamp_ms=1,
    )
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect(fleet.broker.host, fleet.broker.port)
    client.loop_start()
    client.publish(
        topics.device_topic(device_id, Kind.STATE), codec.encode(birth), qos=1, retain=True
    ).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    fleet.wait_known(device_id, "1.0.0")


def test_a_rollout_updates_two_edge_agents_and_never_offers_a_bundle_to_an_esp32_node(
    fleet: Fleet,
) -> None:
    a, b = fleet.agents_online("a", "b")
    fake_esp32_birth(fleet, "eota-esp32")
    art, data = fleet.upload("2.0.0")
    assert art["kind"] == "edge-bundle" and art["version"] == "2.0.0"
    assert art["platform"] == "linux" and art["id"].startswith("eb-")
    code, out, _ = fleet.cli("ota", "ls")
    assert code == 0
    assert any(line.split()[:3] == [art["id"], "edge-bundle", "2.0.0"] for line in out.splitlines())

    status = fleet.rollout(art["id"], a.device_id, b.device_id, "eota-esp32")

    assert status["state"] == "completed", status["reason"]
    devices = by_device(status)
    for agent in (a, b):
        assert devices[agent.device_id]["status"] == "succeeded"
        assert devices[agent.device_id]["detail"] == "running 2.0.0, marked valid"
        agent.rx.wait_for(online_on("2.0.0"), timeout=30, what="birth on 2.0.0")
        (offer,) = offers(fleet, agent.device_id)
        sha = hashlib.sha256(data).digest()
        assert offer.scheme == command_pb2.SIGNATURE_SCHEME_ED25519
        assert offer.sha256 == sha and offer.signature == update.sign(RELEASE, data)[1]
        assert offer.device_hmac == hmac.new(agent.key, sha, "sha256").digest()
        assert offer.platform == "linux"
        slots = update.Slots(agent.state_dir)
        assert slots.pending is None and slots.state["version"] == "2.0.0"
        assert agent.proc.poll() is None  # the same process, re-executed into the new slot
    esp = devices["eota-esp32"]
    assert esp["status"] == "skipped"
    assert esp["detail"] == "ESP32 node: edge-bundle artifacts are never offered to it"
    steps = {(s["device_id"], s["step"]) for s in status["watched"]}
    for agent in (a, b):
        assert {(agent.device_id, "offered"), (agent.device_id, "confirmed")} <= steps


def test_a_bundle_with_a_bad_signature_is_refused_at_upload(fleet: Fleet, tmp_path: Path) -> None:
    bundle, _ = write_bundle(tmp_path, "2.1.0")
    data = bundle.read_bytes()
    forged = tmp_path / "forged.sig"
    forged.write_bytes(update.sign(Ed25519PrivateKey.generate(), data)[1])
    code, out, err = fleet.cli("ota", "upload", str(bundle), "--signature", str(forged))
    assert code == 2, out
    assert err.strip().splitlines() == [
        "camfleet: error: bad signature: not signed by the release key in ota_edge_public_key "
        "(HTTP 422)"
    ]
    # a bundle altered after signing: its own signature no longer matches
    altered = tmp_path / "altered.tar.gz"
    altered.write_bytes(data[:-10] + bytes(10))
    good_sig = tmp_path / "good.sig"
    good_sig.write_bytes(update.sign(RELEASE, data)[1])
    code, _, err = fleet.cli("ota", "upload", str(altered), "--signature", str(good_sig))
    assert code == 2 and "bad signature" in err and len(err.strip().splitlines()) == 1
    # without its signature: refused, saying how to upload it
    code, _, err = fleet.cli("ota", "upload", str(bundle))
    assert code == 2 and "--signature" in err and len(err.strip().splitlines()) == 1
    code, out, _ = fleet.cli("ota", "ls", "--json")
    assert "2.1.0" not in {a["version"] for a in json.loads(out)}


def test_a_bundle_altered_in_the_store_is_refused_by_the_agent(fleet: Fleet) -> None:
    c = fleet.agent("c")
    art, data = fleet.upload("2.0.2")
    stored = fleet.data / "ota" / f"{art['sha256']}.bin"
    assert stored.read_bytes() == data
    stored.write_bytes(data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:])

    status = fleet.rollout(art["id"], c.device_id, live=True)

    assert status["state"] == "paused"
    device = by_device(status)[c.device_id]
    assert device["status"] == "failed"
    assert "digest mismatch" in device["detail"]
    (failed,) = ota_events(c.rx, "failed")
    assert failed.ota.artifact_id == art["id"] and "digest mismatch" in failed.ota.error
    # nothing installed, the old version keeps running
    # status --watch on a terminal: the bars (rollout, then the device's blocks), the steps,
    # and the final table once the rollout paused
    watched = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", status["watched"])  # colours, cursor
    blocks = (len(data) + 4095) // 4096
    # (how often it redraws depends on timing; the last drawing, at the end, is always there)
    assert re.search(rf"rollout {status['id']} +━+ [01]/1 ", watched)
    assert re.search(rf"  {c.device_id} +━+ {blocks}/{blocks} ", watched)
    assert f"{c.device_id}: failed (digest mismatch" in watched
    assert watched.rstrip().splitlines()[-1].startswith(f"{c.device_id}  0      failed")
    assert not (c.state_dir / "update" / "a").exists()
    assert not (c.state_dir / "update" / "b").exists()
    assert not (c.state_dir / "update" / "download").exists()
    assert update.Slots(c.state_dir).pending is None
    assert c.proc.poll() is None
    assert all(s.firmware_version == __version__ for s in c.rx.got.states)


def test_a_bundle_whose_health_check_fails_is_rolled_back_and_counted_as_a_failure(
    fleet: Fleet,
) -> None:
    d = fleet.agent("d")
    art, _ = fleet.upload("2.0.1", broken=True)

    status = fleet.rollout(art["id"], d.device_id)

    assert status["state"] == "paused"
    assert status["reason"].startswith("paused: 1 of 1 finished devices failed")
    device = by_device(status)[d.device_id]
    assert device["status"] == "rolled_back"
    assert "test capture failed: this build cannot capture" in device["detail"]
    assert online_on("2.0.1")(d.rx.got)  # it did start the new version
    d.rx.wait_for(
        lambda g: g.states[-1].firmware_version == __version__, timeout=30, what="back on old"
    )
    assert d.rx.got.states[-1].info["update_failed_version"] == "2.0.1"
    (rolled_back,) = ota_events(d.rx, "rolled_back")
    assert rolled_back.ota.artifact_id == art["id"]
    assert not ota_events(d.rx, "succeeded")
    assert d.proc.poll() is None

"""`camfleet device add` + `camfleet device rotate` end to end: a real prod broker, a real
`camfleet controller run`, a real `camfleet edge run`, and the `camfleet` client commands."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from camfleet.broker_config.profiles import ConfiguredMosquitto, url_with_password
from camfleet.mosquitto import free_port
from camfleet.proto import codec, signing
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import config_pb2, frame_pb2
from tests.broker.conftest import key_of
from tests.broker.peer import Peer

CAMFLEET = [sys.executable, "-m", "camfleet"]
DEVICE = "rot-cam"


def camfleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CAMFLEET, *args], capture_output=True, text=True, timeout=120)


class Traffic:
    """The device's frames, receipts and reports as the controller's identity sees them."""

    def __init__(self, broker: ConfiguredMosquitto, key: bytes) -> None:
        self.key = key
        self.sent: set[tuple[int, int]] = set()
        self.stored: set[tuple[int, int]] = set()
        self.identities: list[str] = []
        self.changed = threading.Condition()
        url = broker.broker_dir.url("controller")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(url.username, url.password)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(
            [(f"camfleet/v1/{DEVICE}/{k}", 1) for k in ("frame", "receipt", "reported")]
        )
        self.client.connect(url.host, url.port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic.rsplit("/", 1)[1]
        payload = bytes(msg.payload)
        with self.changed:
            if kind == "frame":
                f = codec.decode_as(frame_pb2.Frame, payload).message
                self.sent.add((f.session, f.seq))
            elif kind == "receipt":
                body = signing.verify(self.key, Kind.RECEIPT, DEVICE, payload)
                assert body is not None, "a receipt the device would refuse"
                r = codec.decode_as(frame_pb2.Receipt, body).message
                for rng in r.stored:
                    self.stored.update(
                        (rng.session, s) for s in range(rng.first_seq, rng.last_seq + 1)
                    )
            elif payload:
                rep = codec.decode_as(config_pb2.Reported, payload).message
                self.identities.append(rep.identity)
            self.changed.notify_all()

    def wait(self, predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def controller(tmp_path: Path, prod: ConfiguredMosquitto) -> Iterator[str]:
    port = free_port()
    url = url_with_password(prod.broker_dir.url("controller"))
    proc = subprocess.Popen(
        [*CAMFLEET, "controller", "run", "--broker", url, "--data", str(tmp_path / "data"),
         "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # its last start-up line comes once the API listens
        if "ingesting from" in line:
            break
    else:
        pytest.fail("the controller did not start")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(20)


def edge_toml(folder: Path, state: Path) -> Path:
    """The enrolment's edge.toml plus a camera, a 0.2 s schedule and fast reconnects."""
    data = tomllib.loads((folder / "edge.toml").read_text())
    d, b = data["device"], data["broker"]
    lines = [
        "[device]",
        f"id = {json.dumps(d['id'])}",
        f"key = {json.dumps(d['key'])}",
        "[broker]",
        *(f"{k} = {json.dumps(b[k])}" for k in ("url", "ca_file", "root")),
        "reconnect_min_s = 0.05",
        "reconnect_max_s = 0.3",
        "[camera]",
        'backend = "synthetic"',
        "width = 160",
        "height = 120",
        "[schedule]",
        "interval_s = 0.2",
        "[agent]",
        f"state_dir = {json.dumps(str(state))}",
        "telemetry_interval_s = 0",
    ]
    path = folder / "run.toml"
    path.write_text("\n".join([*lines, ""]))
    return path


def test_rotate_switches_a_running_agent_to_new_credentials_losing_nothing(
    tmp_path: Path, prod: ConfiguredMosquitto, controller: str
) -> None:
    data, out = tmp_path / "data", tmp_path / "devices"
    broker = ["--broker-config", str(prod.workdir)]
    token = (data / "api-token").read_text().strip()
    api = ["--api", controller, "--token", token]
    add = camfleet("device", "add", DEVICE, "--board", "usb", "--out", str(out), "--json",
                   "--broker-host", "127.0.0.1", *broker, "--data", str(data))  # fmt: skip
    assert add.returncode == 0, add.stderr
    assert json.loads(add.stdout)["identity"] == DEVICE

    # Enrolled, never seen: listed, and a capture for it needs no --allow-unknown.
    listed = camfleet("devices", "--json", *api)
    assert listed.returncode == 0, listed.stderr
    assert [(d["device_id"], d["state"]) for d in json.loads(listed.stdout)] == [
        (DEVICE, "enrolled")
    ]
    queued = camfleet("capture", DEVICE, *api)
    assert queued.returncode == 0, queued.stderr

    key = key_of(data, DEVICE)
    assert key is not None
    traffic = Traffic(prod, key)
    old_url = tomllib.loads((out / DEVICE / "edge.toml").read_text())["broker"]["url"]
    old_password = old_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    agent = subprocess.Popen(
        [*CAMFLEET, "edge", "run", "--config", str(edge_toml(out / DEVICE, tmp_path / "state"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert traffic.wait(lambda: DEVICE in traffic.identities and len(traffic.stored) >= 3)
        # The rotation reads the capability from the controller's registry (another process:
        # nothing to await but its HTTP answer).
        deadline = time.monotonic() + 20
        while "credentials" not in httpx.get(
            f"{controller}/api/v1/devices/{DEVICE}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        ).json().get("capabilities", []):
            assert time.monotonic() < deadline, "the agent's birth never reached the registry"
            time.sleep(0.1)

        with traffic.changed:
            before = max(s for s, _ in traffic.sent)
        rotated = camfleet("device", "rotate", DEVICE, "--json", "--wait", "30", *api, *broker)
        assert rotated.returncode == 0, rotated.stderr
        result = json.loads(rotated.stdout)
        new = result["identity"]
        assert result["status"] == "done" and result["retired"] == [DEVICE], result
        assert new.startswith(f"{DEVICE}.") and traffic.identities[-1] == new

        # The old password is refused, even with the client id it was pinned to.
        old = Peer(prod.port, DEVICE, old_password, f"camfleet-edge-{DEVICE}")
        assert not old.connect() and old.refused == "Not authorized"
        # Frames keep flowing on the new connection (a later session) and are stored.
        assert traffic.wait(lambda: sum(1 for s, _ in traffic.stored if s > before) >= 3)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=30)
    # Nothing lost: every session's frames are 1..n without a gap, every one stored.
    assert traffic.wait(lambda: traffic.sent <= traffic.stored, 20), traffic.sent - traffic.stored
    for session in {s for s, _ in traffic.sent}:
        seqs = sorted(q for s, q in traffic.sent if s == session)
        assert seqs == list(range(1, len(seqs) + 1)), (session, seqs)
    assert "Traceback" not in err

    # Restarted, it connects with the credentials it stored (its config file's are void now).
    with traffic.changed:
        reports, last = len(traffic.identities), max(s for s, _ in traffic.sent)
    agent = subprocess.Popen(
        [*CAMFLEET, "edge", "run", "--config", str(out / DEVICE / "run.toml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert traffic.wait(
            lambda: len(traffic.identities) > reports and any(s > last for s, _ in traffic.stored)
        )
        assert traffic.identities[-1] == new
        assert stat.S_IMODE((tmp_path / "state" / "credentials.json").stat().st_mode) == 0o600
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        traffic.close()


def test_an_agent_whose_delivered_identity_is_refused_falls_back_to_the_previous_one(
    tmp_path: Path, prod: ConfiguredMosquitto
) -> None:
    """A rotation undone on the broker (the new identity deleted before the old one) must not
    strand the device: a CONNACK refusal makes the next attempt use the other stored identity."""
    from camfleet.controller.device_keys import registry_keys
    from camfleet.edge.agent import EdgeAgent
    from camfleet.edge.state import AgentState
    from camfleet.enrol import add_device
    from tests.broker.test_enrol import agent_config

    with registry_keys(tmp_path / "data") as keys:
        e = add_device(prod.broker_dir, keys, DEVICE, (), "usb", tmp_path / "devices")
    assert e.password is not None
    AgentState(tmp_path / "agent-state").save_credentials(
        [(f"{DEVICE}.deleted0", "never-created"), (DEVICE, e.password)]
    )
    agent = EdgeAgent(agent_config(tmp_path, tmp_path / "devices" / DEVICE))
    agent.start()
    try:
        assert agent.conn.connected.wait(15), agent.conn.last_error
        assert agent.conn.username == DEVICE and agent.conn.connects == 1
        assert agent.conn.identities[-1][0] == f"{DEVICE}.deleted0"  # tried, refused, rotated
    finally:
        agent.stop()
        agent.close()


def test_an_esp32_node_takes_delivered_credentials_and_wakes_with_them(
    tmp_path: Path, prod: ConfiguredMosquitto
) -> None:
    """The real node (MicroPython unix port) enrolled on the prod broker over TLS: a signed
    desired config with a sealed new identity makes it store and reconnect with it within the
    wake; once retired, the old password is refused and the next wake uses the new one."""
    from camfleet.broker_config.admin import DynsecAdmin
    from camfleet.controller.device_keys import registry_keys
    from camfleet.enrol import add_device
    from camfleet.esp32_node.tools.hostdevice import HostDevice
    from camfleet.proto import credentials
    from camfleet.rotate import create_identity, finish_rotation
    from camfleet.testing.esp32_receiver import Receiver
    from tests.esp32.conftest import jpeg

    node_id = "gate-cam"
    with registry_keys(tmp_path / "data") as keys:
        e = add_device(prod.broker_dir, keys, node_id, (), "esp32-cam", tmp_path / "devices",
                       "127.0.0.1")  # fmt: skip
    assert e.password is not None
    node = HostDevice(tmp_path / "node", node_id)
    node.provision(broker_host="unused", broker_port=1, jpegs=[jpeg(seed=1), jpeg(seed=2)])
    node.load_nvs_image((tmp_path / "devices" / node_id / "nvs.bin").read_bytes())
    ctl = prod.broker_dir.url("controller")
    rx = Receiver(prod.host, prod.port, node_id, device_key=e.key,
                  username=ctl.username, password=ctl.password).start()  # fmt: skip
    try:
        woke = node.run_wake()
        assert woke.ended == "deepsleep", woke.output
        assert "credentials" in rx.of("state")[0].capabilities

        with DynsecAdmin(prod.broker_dir.url("admin")) as admin:
            user, password = create_identity(admin, node_id, node_id)
        sealed = credentials.seal(e.key, node_id, user, password)
        rx.set_desired(config_pb2.Desired(version=1, credentials=sealed))
        woke = node.run_wake()
        assert woke.ended == "deepsleep", woke.output
        assert [r.identity for r in rx.of("reported")][-1] == user
        assert node.read_nvs()["mqtt_user"] == user.encode()
        assert node.spool_files() == []  # its frames went out and were receipted meanwhile

        done = finish_rotation(prod.broker_dir, node_id, wait_s=10)
        assert (done.status, done.identity, done.retired) == ("done", user, [node_id])
        assert not Peer(prod.port, node_id, e.password, node_id).connect()
        births = len(rx.of("state"))
        woke = node.run_wake()
        assert woke.ended == "deepsleep", woke.output
        assert len(rx.of("state")) > births  # connected again, with the new identity only
        assert node.spool_files() == []
        assert not [ev for ev in rx.of("event") if ev.type.endswith("_refused")]

        # A delivered identity the broker refuses (deleted before it was used): the node falls
        # back to the previous one it kept, within the same wake.
        node.write_nvs({"mqtt_user": f"{node_id}.gone0000", "mqtt_pass": "never-created",
                        "mqtt_user0": user, "mqtt_pass0": password})  # fmt: skip
        births = len(rx.of("state"))
        woke = node.run_wake()
        assert woke.ended == "deepsleep", woke.output
        assert len(rx.of("state")) > births
        assert node.read_nvs()["mqtt_user"] == user.encode()
    finally:
        rx.close()
        node.cut_power()

"""Rollouts through the real controller to real MicroPython nodes on a real mosquitto: the
controller signs each offer with the device's key and serves the blocks; nodes download, verify,
reboot into the new image and confirm it (or roll back)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.controller.ota.rollouts import RolloutOptions
from camfleet.controller.service import Controller
from camfleet.esp32_node.tools.hostdevice import HostDevice
from camfleet.mosquitto import Mosquitto
from camfleet.testing.controller_process import ControllerProcess, Waiter, start_controller
from tests.esp32.conftest import DEVICE_KEY
from tests.ota_helpers import release_key, signed_image

__all__ = ["release_key"]  # fixture

OTA_VALID = 2


@pytest.fixture
def ota_controller(mosquitto: Mosquitto, tmp_path: Path, release_key):  # type: ignore[no-untyped-def]
    ctl = start_controller(mosquitto.url, tmp_path / "data", ota_public_key=str(release_key.public))
    yield ctl
    ctl.stop()


def wake_all(devs: list[HostDevice]) -> dict[str, str]:
    """One wake of every device at once (a fleet waking on its timers); how each ended."""
    for d in devs:
        d.start_wake()
    return {d.device_id: d.wait_wake(120).ended for d in devs}


def settle(ctl: Controller, devs: list[HostDevice]) -> None:
    """Wait until the controller applied everything the devices sent (their going-to-sleep or
    reset state is their last word), then run the rollout engine once."""
    waiter = Waiter(ctl)

    def caught_up() -> bool:
        with ctl.db.read() as tx:
            rows = tx.query("SELECT device_id, session FROM devices")
        seen = {r["device_id"]: r["session"] for r in rows}
        return all(seen.get(d.device_id, -1) >= _session(d) for d in devs)

    assert waiter.wait_for(caught_up, 60), "controller did not catch up with the devices"
    # Events follow the birth in the same wake; the writer applies in arrival order, so once the
    # sessions are in, wait for the writer's queue to drain too.
    assert waiter.wait_for(lambda: ctl.writer.depth() == 0, 30)
    ctl.rollouts.tick()


def _session(d: HostDevice) -> int:
    value = d.read_nvs().get("session", 0)
    return int(value) if isinstance(value, int) else 0


def fleet(
    make_device: Callable[..., HostDevice],
    mosquitto: Mosquitto,
    ctl: Controller,
    n: int,
    factory: bytes | None = None,
) -> list[HostDevice]:
    """``n`` provisioned nodes on 1.0.0 (``factory``: a signed 1.0.0, so the emulated chip
    verifies updates against the release key), known to the controller with their keys."""
    devs = [make_device(mosquitto, factory_image=factory) for _ in range(n)]
    for d in devs:
        ctl.device_keys.put(d.device_id, DEVICE_KEY)  # the key the controller signs with
    assert set(wake_all(devs).values()) == {"deepsleep"}  # births: the registry knows them
    settle(ctl, devs)
    with ctl.db.read() as tx:
        fw = {r["device_id"]: r["firmware"] for r in tx.query("SELECT * FROM devices")}
    assert fw == {d.device_id: "1.0.0" for d in devs}
    return devs


def offers_per_device(ctl: Controller) -> dict[str, int]:
    with ctl.db.read() as tx:
        rows = tx.query("SELECT device_id FROM commands WHERE action = 'ota_offer'")
    out: dict[str, int] = {}
    for r in rows:
        out[r["device_id"]] = out.get(r["device_id"], 0) + 1
    return out


def run_until(
    ctl: Controller, devs: list[HostDevice], rid: str, states: tuple[str, ...], rounds: int = 14
) -> dict[str, Any]:
    for _ in range(rounds):
        status = ctl.rollouts.status(rid, ctl.device_state)
        if status["state"] in states:
            return status
        wake_all(devs)
        settle(ctl, devs)
    raise AssertionError(f"rollout not {states} after {rounds} rounds: {status}")


def test_rollout_with_canary_and_two_phases_to_six_sleeping_nodes(
    mosquitto, make_device, ota_controller, release_key, tmp_path
):  # type: ignore[no-untyped-def]
    ctl = ota_controller
    factory = signed_image("1.0.0", 60_000, release_key, tmp_path)
    devs = fleet(make_device, mosquitto, ctl, 6, factory)
    art = ctl.artifacts.add(signed_image("1.1.0", 200_000, release_key, tmp_path))
    ids = sorted(d.device_id for d in devs)
    opts = RolloutOptions(
        target="devices:" + ",".join(ids),
        canary=1,
        phases=(0.5, 1.0),
        max_failure=0.2,
        min_sample=3,
        device_timeout_s=3600,
    )
    status = ctl.rollouts.create(art["id"], opts)
    rid = status["id"]
    status = ctl.rollouts.status(rid, ctl.device_state)
    by = {d["device_id"]: d for d in status["devices"]}
    # every node is asleep: the canary's offer waits in its broker session
    assert [by[i]["phase"] for i in ids] == [0, 1, 1, 2, 2, 2]
    assert by[ids[0]]["shown"] == "waiting for wake"
    assert {by[i]["status"] for i in ids[1:]} == {"pending"}

    phases_seen = set()
    for _ in range(14):
        status = ctl.rollouts.status(rid, ctl.device_state)
        phases_seen.add(status["phase"])
        if status["state"] != "running":
            break
        started = {d["device_id"] for d in status["devices"] if d["status"] != "pending"}
        # a later phase never starts before the earlier one finished
        assert started <= {i for i in ids if by[i]["phase"] <= status["phase"]}
        wake_all(devs)
        settle(ctl, devs)
    assert status["state"] == "completed", status
    assert phases_seen == {0, 1, 2}
    assert {d["status"] for d in status["devices"]} == {"succeeded"}
    for d in devs:
        assert d.run_wake().ended == "deepsleep"  # stays on the new image
        assert "1.1.0 (ota_1)" in d.output
        assert OTA_VALID in [state for seq, state in d.otadata() or []]
    assert offers_per_device(ctl) == {i: 1 for i in ids}
    steps = [e["step"] for e in status["events"] if e["device_id"] == ids[0]]
    assert steps[0] == "offered" and steps[-1] == "confirmed"
    assert "verifying" in steps and "rebooting" in steps
    assert any(s.startswith("downloading") for s in steps)


def test_image_failing_its_health_check_rolls_back_and_pauses_the_rollout(
    mosquitto, make_device, ota_controller, release_key, tmp_path
):  # type: ignore[no-untyped-def]
    ctl = ota_controller
    devs = fleet(make_device, mosquitto, ctl, 3)
    art = ctl.artifacts.add(signed_image("1.2.0", 120_000, release_key, tmp_path, seed=4))
    ids = sorted(d.device_id for d in devs)
    rid = ctl.rollouts.create(
        art["id"],
        RolloutOptions(target="devices:" + ",".join(ids), max_failure=0.2, min_sample=3),
    )["id"]
    ended = wake_all(devs)  # all download, verify, set_boot and reset
    assert set(ended.values()) == {"hard"}, ended
    settle(ctl, devs)
    bad = next(d for d in devs if d.device_id == ids[1])
    bad.set_fault("wifi", 1)  # the new image cannot reach the network: no health check
    wake_all(devs)
    settle(ctl, [d for d in devs if d is not bad])  # the bad one said nothing this time
    status = run_until(ctl, devs, rid, ("paused", "completed"))
    assert status["state"] == "paused"
    assert status["reason"] == ("paused: 1 of 3 finished devices failed (33% > max failure 20%)")
    by = {d["device_id"]: d for d in status["devices"]}
    assert by[ids[1]]["status"] == "rolled_back"
    assert "running 1.0.0 again" in by[ids[1]]["detail"]
    assert by[ids[0]]["status"] == by[ids[2]]["status"] == "succeeded"


def test_image_altered_in_the_store_is_refused_by_the_node(
    mosquitto, make_device, ota_controller, release_key, tmp_path
):  # type: ignore[no-untyped-def]
    ctl = ota_controller
    devs = fleet(make_device, mosquitto, ctl, 1)
    art = ctl.artifacts.add(signed_image("1.3.0", 120_000, release_key, tmp_path, seed=5))
    path = ctl.artifacts.path(art["sha256"])
    data = bytearray(path.read_bytes())
    data[0x2000] ^= 0xFF  # written straight into the artifact store after the upload
    path.write_bytes(bytes(data))
    rid = ctl.rollouts.create(art["id"], RolloutOptions(target=f"devices:{devs[0].device_id}"))[
        "id"
    ]
    status = run_until(ctl, devs, rid, ("paused", "completed"))
    dev = status["devices"][0]
    assert dev["status"] == "failed" and "sha256 mismatch" in dev["detail"], dev
    assert devs[0].otadata() is None  # set_boot never ran
    assert devs[0].run_wake().ended == "deepsleep"
    assert "1.0.0 (ota_0)" in devs[0].output  # still booting its old firmware
    assert offers_per_device(ctl) == {devs[0].device_id: 1}
    with ctl.db.read() as tx:
        offer = tx.one("SELECT status, detail FROM commands WHERE action = 'ota_offer'")
    assert offer is not None and offer["status"] == "failed"  # the node acked it FAILED
    assert "sha256 mismatch" in offer["detail"]


def test_controller_killed_mid_transfer_and_a_node_losing_power_both_resume(
    mosquitto, make_device, release_key, tmp_path
):  # type: ignore[no-untyped-def]
    """The controller dies with -9 while nodes download; another controller on the same data
    continues the rollout, and no finished device is offered the image twice. A node whose
    power is cut mid-transfer resumes from the blocks it kept."""
    data = tmp_path / "data"
    ctl = start_controller(mosquitto.url, data, ota_public_key=str(release_key.public))
    try:
        factory = signed_image("1.0.0", 60_000, release_key, tmp_path)
        devs = fleet(make_device, mosquitto, ctl, 3, factory)
        art = ctl.artifacts.add(signed_image("1.4.0", 300_000, release_key, tmp_path, seed=6))
        ids = sorted(d.device_id for d in devs)
        rid = ctl.rollouts.create(art["id"], RolloutOptions(target="all", min_sample=1))["id"]
    finally:
        ctl.stop()
    total = -(-art["size"] // 4096)
    proc = ControllerProcess(
        mosquitto.host, mosquitto.port, data, "--ota-public-key", str(release_key.public),
        "--ota-blocks-per-s", "40", "--tick-s", "0.2",
    )  # fmt: skip
    proc.start()
    cut_dev = next(d for d in devs if d.device_id == ids[2])
    downloading = threading.Event()
    requests: dict[str, int] = {}

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        device = msg.topic.split("/")[2]
        requests[device] = requests.get(device, 0) + 1
        if requests[device] == 4:
            if device == cut_dev.device_id:
                cut_dev.cut_power()  # mid-transfer: some blocks written, most not
            downloading.set()

    watch = paho.Client(CallbackAPIVersion.VERSION2)
    watch.on_message = on_message
    watch.connect(mosquitto.host, mosquitto.port)
    watch.subscribe("camfleet/v1/+/ota/request", 1)
    watch.loop_start()
    ctl2 = None
    try:
        for d in devs:
            d.start_wake()
        assert downloading.wait(60), "no device started downloading"
        proc.kill9()  # mid-transfer
        ctl2 = start_controller(mosquitto.url, data, ota_public_key=str(release_key.public))
        ended = {d.device_id: d.wait_wake(120).ended for d in devs}
        assert ended[cut_dev.device_id] == "power_cut"
        bits = cut_dev.read_nvs()["ota_bits"]
        assert isinstance(bits, bytes)
        kept = sum(bin(b).count("1") for b in bits)
        assert 0 < kept < total  # progress survived the cut in NVS
        assert {ended[i] for i in ids[:2]} == {"hard"}  # finished with the second controller
        settle(ctl2, [d for d in devs if d is not cut_dev])
        status = run_until(ctl2, devs, rid, ("completed", "paused"))
        assert status["state"] == "completed", status
        assert {d["status"] for d in status["devices"]} == {"succeeded"}
        assert offers_per_device(ctl2) == {i: 1 for i in ids}  # never offered twice
        served = ctl2.metrics.get("ota_blocks_served_total")
        assert served < 3 * total  # resumed, not restarted from block 0
    finally:
        watch.loop_stop()
        watch.disconnect()
        proc.stop()
        if ctl2 is not None:
            ctl2.stop()

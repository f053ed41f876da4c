"""Edge-agent self-update end to end: a real agent process, real mosquitto, real re-exec.

The bundle's payload is this checkout's own camfleet package (camfleet, camfleet.edge,
camfleet.proto) with another ``__version__``, so the birth tells which slot runs; the broken
variant cannot capture, which fails the health check.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camfleet import __version__
from camfleet.edge import update
from camfleet.proto.v1 import state_pb2
from tests.edge.bundles import RELEASE, write_bundle


@pytest.fixture
def setup(mosquitto, tmp_path, device_id, receiver_for):
    config = tmp_path / "edge.toml"
    config.write_text(
        f"""
[device]
id = "{device_id}"
[broker]
url = "{mosquitto.url}"
reconnect_min_s = 0.05
reconnect_max_s = 0.3
[camera]
backend = "synthetic"
width = 160
height = 120
[agent]
state_dir = "{tmp_path / "state"}"
telemetry_interval_s = 0
update_public_key = "{update.public_key_text(RELEASE)}"
"""
    )
    procs: list[subprocess.Popen[bytes]] = []

    def camfleet_cmd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "camfleet", *args, "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start() -> subprocess.Popen[bytes]:
        # cwd outside the checkout: `python -m` would otherwise import ./camfleet first
        p = subprocess.Popen(
            [sys.executable, "-m", "camfleet", "edge", "run", "-c", str(config)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(p)
        return p

    yield receiver_for(mosquitto, device_id), camfleet_cmd, start, tmp_path
    for p in procs:
        p.send_signal(signal.SIGTERM)
        p.wait(60)


def online_on(version: str):
    return lambda g: any(
        s.presence == state_pb2.PRESENCE_ONLINE and s.firmware_version == version for s in g.states
    )


def ota_events(g, phase: str):
    return [e for e in g.events if e.type == "ota" and e.ota.phase == phase]


def test_an_edge_agent_updates_itself(setup):
    rx, cmd, start, tmp_path = setup
    bundle, sig = write_bundle(tmp_path, "2.0.0")
    done = cmd("edge", "install-update", str(bundle), "--signature", str(sig))
    assert done.returncode == 0, done.stderr
    assert "installed 2.0.0" in done.stdout
    start()
    rx.wait_for(lambda g: ota_events(g, "succeeded"), timeout=90, what="update confirmed")
    assert online_on("2.0.0")(rx.got)
    assert not online_on(__version__)(rx.got)  # the launcher switched before connecting
    slots = update.Slots(tmp_path / "state")
    assert slots.pending is None and slots.state["version"] == "2.0.0"


def test_a_bundle_with_a_bad_signature_is_refused(setup):
    rx, cmd, start, tmp_path = setup
    bundle, sig = write_bundle(tmp_path, "2.0.0", key=Ed25519PrivateKey.generate())
    refused = cmd("edge", "install-update", str(bundle), "--signature", str(sig))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"camfleet: error: {bundle}: refused: bad signature: not signed by the release key in "
        "[agent] update_public_key"
    ]
    assert not (tmp_path / "state" / "update").exists()  # nothing installed, not even a dir
    start()
    rx.wait_for(online_on(__version__), timeout=60, what="birth on the installed version")


def test_a_bundle_whose_health_check_fails_is_rolled_back(setup):
    rx, cmd, start, tmp_path = setup
    bundle, sig = write_bundle(tmp_path, "2.0.1", broken=True)
    assert cmd("edge", "install-update", str(bundle), "--signature", str(sig)).returncode == 0
    proc = start()
    rx.wait_for(lambda g: ota_events(g, "rolled_back"), timeout=120, what="rollback reported")
    (event,) = ota_events(rx.got, "rolled_back")
    assert event.attributes["failed_version"] == "2.0.1"
    assert "test capture failed: this build cannot capture" in event.message
    assert online_on("2.0.1")(rx.got)  # it did start the new version
    rx.wait_for(online_on(__version__), what="birth on the previous version")
    back = [s for s in rx.got.states if s.firmware_version == __version__]
    assert back[-1].info["update_failed_version"] == "2.0.1"
    assert proc.poll() is None  # same process (re-exec), still running
    slots = update.Slots(tmp_path / "state")
    assert slots.pending is None and slots.state["active"] is None

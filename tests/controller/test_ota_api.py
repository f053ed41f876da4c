"""Rollouts through the CLI and the HTTP API of a real controller, with simulated devices on a
real mosquitto: device keys, offers signed with each device's key, progress from device events,
pause / resume / abort, ``status --watch``, and an artifact in use that cannot be removed."""

from __future__ import annotations

import hashlib
import hmac
import json

from click.testing import CliRunner

from camfleet.cli import cli
from camfleet.mosquitto import free_port
from camfleet.proto import codec
from camfleet.proto.v1 import telemetry_pb2
from camfleet.testing.controller_process import Waiter
from tests.ota_helpers import release_key, signed_image

__all__ = ["release_key"]  # fixture

TOKEN = "test-token"


def run_cli(api: str, *args: str) -> tuple[int, str, str]:
    env = {"CAMFLEET_API": api, "CAMFLEET_TOKEN": TOKEN}
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_rollout_cli_and_api(controllers, devices, release_key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    ctl = controllers(http=f"127.0.0.1:{port}", token=TOKEN, ota_public_key=str(release_key.public))
    api = f"http://127.0.0.1:{port}"
    waiter = Waiter(ctl)
    a, b = devices("ota", platform="esp32"), devices("ota", platform="esp32")
    keys = {a.device_id: b"a" * 32, b.device_id: b"b" * 32}

    def known() -> bool:
        with ctl.db.read() as tx:
            return len(tx.query("SELECT 1 FROM devices WHERE firmware = '1.0.0'")) == 2

    assert waiter.wait_for(known, 20)
    for dev, key in keys.items():
        code, _, err = run_cli(api, "ota", "key", dev, "--hex", key.hex())
        assert code == 0, err
    code, _, err = run_cli(api, "ota", "key", a.device_id, "--hex", "zz")
    assert code != 0 and "not hex" in err
    image = tmp_path / "fw.bin"
    image.write_bytes(signed_image("1.5.0", 80_000, release_key, tmp_path))
    code, out, err = run_cli(api, "ota", "upload", str(image), "--json")
    assert code == 0, err
    art = json.loads(out)

    first, second = sorted(keys)
    code, out, err = run_cli(
        api, "ota", "rollout", "create", "--artifact", art["id"],
        "--target", f"devices:{first},{second}", "--canary", "1", "--phases", "100%",
        "--max-failure", "0%", "--min-sample", "1", "--device-timeout", "1h", "--json",
    )  # fmt: skip
    assert code == 0, err
    rollout = json.loads(out)
    rid = rollout["id"]
    assert [(d["device_id"], d["status"]) for d in rollout["devices"]] == [
        (first, "offered"),
        (second, "pending"),
    ]
    canary = a if a.device_id == first else b
    assert canary.wait_until(lambda: len(canary.commands) == 1, 60)
    offer = canary.commands[0].command.ota_offer
    sha = hashlib.sha256(image.read_bytes()).digest()
    assert offer.sha256 == sha and offer.size == len(image.read_bytes())
    assert offer.signature == hmac.new(keys[first], sha, "sha256").digest()  # its own key

    progress = telemetry_pb2.Event(type="ota", message="paused, resumes next wake")
    progress.ota.artifact_id, progress.ota.phase = art["id"], "downloading"
    progress.ota.blocks_done, progress.ota.blocks_total = 7, offer.size // 4096
    canary.publish_raw("event", codec.encode(progress))

    def shows_progress() -> bool:
        st = ctl.rollouts.status(rid)
        return st["devices"][0]["blocks_done"] == 7

    assert waiter.wait_for(shows_progress, 20)
    code, out, _ = run_cli(api, "ota", "rollout", "status", rid)
    assert code == 0 and f"{first}" in out and "downloading" in out and "7/" in out

    code, _, err = run_cli(api, "ota", "rm", art["id"])
    assert code != 0 and f"used by rollout {rid}" in err

    for action, state in (("pause", "paused"), ("resume", "running"), ("abort", "aborted")):
        code, out, err = run_cli(api, "ota", "rollout", action, rid)
        assert code == 0 and out.strip() == f"rollout {rid}: {state}", err
    code, _, err = run_cli(api, "ota", "rollout", "resume", rid)
    assert code != 0 and "is aborted: cannot resume" in err

    code, out, _ = run_cli(api, "ota", "rollout", "status", rid, "--watch")
    assert code == 0
    lines = out.splitlines()
    assert any(f"{first}: offered" in line for line in lines)
    assert any(f"{first}: downloading 7/" in line for line in lines)
    assert any("rollout: aborted (by the operator)" in line for line in lines)
    code, out, _ = run_cli(api, "ota", "rollout", "ls")
    assert rid in out and "aborted" in out
    code, out, _ = run_cli(api, "ota", "rollout", "status", "rnope")
    assert code != 0

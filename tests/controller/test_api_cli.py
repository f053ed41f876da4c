"""The HTTP API and the CLI over it, against a real controller, broker and simulated device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from camfleet.cli import cli
from camfleet.mosquitto import free_port
from camfleet.proto import codec
from camfleet.proto.v1.telemetry_pb2 import Event, Telemetry
from camfleet.testing.controller_process import Waiter

TOKEN = "test-token"


def http_get(api: str, path: str) -> Any:
    return httpx.get(api + path, timeout=10).json()


def run_cli(api: str, *args: str, token: str | None = TOKEN) -> tuple[int, str, str]:
    env = {"CAMFLEET_API": api}
    if token:
        env["CAMFLEET_TOKEN"] = token
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_api_and_cli(controllers, devices, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    ctl = controllers(http=f"127.0.0.1:{port}", token=TOKEN)
    api = f"http://127.0.0.1:{port}"
    waiter = Waiter(ctl)
    dev = devices("api")
    frames = dev.send_frames(2, size=5000)
    assert dev.wait_receipted(timeout=20)
    http = httpx.Client(base_url=api, timeout=10)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    dev.publish_raw(
        "telemetry", codec.encode(Telemetry(timestamp_ms=1, battery_mv=3712, session=1))
    )
    dev.publish_raw("event", codec.encode(Event(type="motion", message="pir", session=1)))
    assert waiter.wait_for(
        lambda: len(http_get(api, f"/api/v1/devices/{dev.device_id}/events")["items"]) == 1, 10
    )
    tel = http_get(api, f"/api/v1/devices/{dev.device_id}/telemetry")["items"]
    assert tel[0]["battery_mv"] == 3712
    assert http_get(api, f"/api/v1/devices/{dev.device_id}")["telemetry"]["battery_mv"] == 3712

    assert http.get("/health").json()["mqtt_connected"] is True
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/api/v1/devices", "/api/v1/frames", "/api/v1/commands", "/api/v1/schedules"} <= set(
        paths
    )
    metrics = http.get("/metrics").text
    assert "camfleet_controller_frames_stored_total 2" in metrics

    devices_json = http.get("/api/v1/devices").json()["items"]
    assert [d["device_id"] for d in devices_json] == [dev.device_id]
    assert devices_json[0]["state"] == "online"
    detail = http.get(f"/api/v1/devices/{dev.device_id}").json()
    assert detail["frames"] == 2 and detail["platform"] == "sim"
    assert http.get("/api/v1/devices/NOPE").status_code == 404

    # Writes need the token; bad input is a 422 with a reason, not a crash.
    body = {"action": "capture", "device": dev.device_id, "params": {"count": 1}}
    assert http.post("/api/v1/commands", json=body).status_code == 401
    assert (
        http.post("/api/v1/commands", json=body, headers={"Authorization": "Bearer x"}).status_code
        == 401
    )
    bad = http.put(
        f"/api/v1/devices/{dev.device_id}/config",
        json={"config": {"camera": {"jpeg_quality": 500}}},
        headers=auth,
    )
    assert bad.status_code == 422 and "jpeg_quality" in bad.json()["detail"]
    unknown = http.put(
        f"/api/v1/devices/{dev.device_id}/config", json={"config": {"nope": 1}}, headers=auth
    )
    assert unknown.status_code == 422
    assert (
        http.post("/api/v1/commands", json={**body, "action": "explode"}, headers=auth).status_code
        == 422
    )

    # CLI: tables by default, JSON on request.
    code, out, _ = run_cli(api, "devices")
    assert code == 0 and dev.device_id in out and "online" in out and out.startswith("DEVICE")
    code, out, _ = run_cli(api, "devices", "--json")
    assert json.loads(out)[0]["device_id"] == dev.device_id

    code, out, _ = run_cli(api, "frames", "ls", "--device", dev.device_id, "--json")
    listed = json.loads(out)
    assert [f["seq"] for f in listed] == [2, 1]
    target = tmp_path / "latest.jpg"
    code, out, _ = run_cli(api, "frames", "get", dev.device_id, "latest", "-o", str(target))
    assert code == 0 and target.read_bytes() == frames[-1].data

    code, out, _ = run_cli(api, "capture", dev.device_id, "--json")
    assert code == 0
    command_id = json.loads(out)[0]["id"]
    assert waiter.wait_for(
        lambda: http.get(f"/api/v1/commands/{command_id}").json()["status"] == "done", 15
    )
    code, out, _ = run_cli(api, "capture", dev.device_id, token=None)
    assert code == 2

    code, out, err = run_cli(api, "config", "set", dev.device_id, "camera.jpeg_quality=80")
    assert code == 0, err
    code, out, _ = run_cli(api, "config", "get", dev.device_id, "--json")
    cfg = json.loads(out)
    assert cfg["desired"]["camera"]["jpeg_quality"] == 80 and cfg["version"] == 1
    assert dev.wait_until(lambda: any(d.version == 1 for d in dev.desired), 60)

    # Groups: assign through the API, then a group capture and group defaults through the CLI.
    patched = http.patch(
        f"/api/v1/devices/{dev.device_id}", json={"groups": ["porch"]}, headers=auth
    )
    assert patched.status_code == 200 and patched.json()["groups"] == ["porch"]
    code, out, err = run_cli(api, "capture", "--group", "porch", "--json")
    assert code == 0, err
    group_cmd = json.loads(out)[0]
    assert group_cmd["group"] == "porch" and group_cmd["device_id"] == dev.device_id
    code, out, err = run_cli(api, "config", "set", "--group", "porch", "camera.hflip=true")
    assert code == 0, err
    code, out, _ = run_cli(api, "config", "get", "--group", "porch", "--json")
    assert json.loads(out)["config"] == {"camera": {"hflip": True}}
    code, out, _ = run_cli(api, "config", "get", dev.device_id, "--json")
    assert json.loads(out)["desired"]["camera"] == {"jpeg_quality": 80, "hflip": True}
    assert waiter.wait_for(
        lambda: http.get(f"/api/v1/commands/{group_cmd['id']}").json()["status"] == "done", 15
    )

    code, out, err = run_cli(
        api, "schedule", "add", "--device", dev.device_id, "--every", "3600", "--json"
    )
    assert code == 0, err
    sid = json.loads(out)["id"]
    code, out, _ = run_cli(api, "schedule", "ls")
    assert sid in out and "interval" in out
    code, out, _ = run_cli(api, "schedule", "rm", sid)
    assert code == 0
    assert http.get(f"/api/v1/schedules/{sid}").status_code == 404
    code, _, err = run_cli(api, "schedule", "add", "--device", dev.device_id, "--cron", "bad cron")
    assert code == 2 and "cron" in err

    # Unreachable API: one clear line, exit 2, no traceback.
    code, out, err = run_cli(f"http://127.0.0.1:{free_port()}", "devices")
    assert code == 2 and err.startswith("camfleet: error: cannot reach") and "Traceback" not in err

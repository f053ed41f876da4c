"""The client commands as a user types them on the controller's machine: the real `camfleet`
command against a real `camfleet controller run` and a real mosquitto."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from camfleet.mosquitto import Mosquitto, free_port
from camfleet.proto import codec, topics
from camfleet.proto.topics import Kind
from tests.proto.mqtt_helpers import publish
from tests.proto.samples import SAMPLES

CAMFLEET = [sys.executable, "-m", "camfleet"]
BROKER_PASSWORD = "s3cret-in-the-url"


@dataclass
class RunningController:
    api: str
    data: Path
    stdout: list[str]
    proc: subprocess.Popen[str]


def camfleet(
    *args: str, env: dict[str, str] | None = None, clean: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the `camfleet` command with CAMFLEET_* removed from the environment (as a fresh shell
    has it), plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not (clean and k.startswith("CAMFLEET_"))}
    return subprocess.run(
        [*CAMFLEET, *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("camfleet: error:"), lines
    return lines[0]


@pytest.fixture
def controller(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[RunningController]:
    port = free_port()
    data = tmp_path / "controller"
    proc = subprocess.Popen(
        [
            *CAMFLEET,
            "controller",
            "run",
            "--broker",
            # A password the dev broker does not check, which no output may show.
            f"mqtt://viewer:{BROKER_PASSWORD}@127.0.0.1:{mosquitto.port}",
            "--data",
            str(data),
            "--http",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    # Its last start-up line comes once the API listens: reading it is the readiness signal.
    for line in proc.stdout:
        lines.append(line)
        if "ingesting from" in line:
            break
    assert lines and "ingesting from" in lines[-1], lines
    yield RunningController(f"http://127.0.0.1:{port}", data, lines, proc)
    proc.terminate()
    proc.wait(60)


def register(mosquitto: Mosquitto, api: str, device: str) -> None:
    """Publish a birth for ``device`` and wait until the controller lists it."""
    birth = codec.encode(SAMPLES[Kind.STATE])
    publish(
        mosquitto.host, mosquitto.port, [(topics.device_topic(device, Kind.STATE), birth, True)]
    )
    deadline = time.monotonic() + 20
    while httpx.get(f"{api}/api/v1/devices/{device}", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, f"{device} never registered"
        time.sleep(0.1)  # another process's registry: nothing to await but its HTTP answer


def test_controller_run_says_where_the_token_is_never_prints_secrets_and_owns_its_data(
    controller: RunningController,
) -> None:
    token = (controller.data / "api-token").read_text().strip()
    out = "".join(controller.stdout)
    assert token not in out
    assert BROKER_PASSWORD not in out
    assert "ingesting from mqtt://viewer@127.0.0.1:" in out  # as the log lines show it
    assert f"API token generated into {controller.data}/api-token" in out
    port = controller.api.rsplit(":", 1)[1]
    saved = Path(os.environ["XDG_CONFIG_HOME"]) / "camfleet" / "tokens" / f"127.0.0.1-{port}"
    assert f"API token saved for this user in {saved}" in out
    assert saved.read_text().strip() == token
    assert saved.stat().st_mode & 0o777 == 0o600

    # A second controller on the same DATA, refused before any connection attempt (an address
    # where nothing listens would otherwise just be retried).
    second = camfleet("controller", "run", "--data", str(controller.data),
                      "--broker", f"mqtt://127.0.0.1:{free_port()}", "--http", "")  # fmt: skip
    line = one_line_error(second)
    assert line.startswith(
        f"camfleet: error: another controller uses {controller.data} with the same MQTT client "
        f"id (pid {controller.proc.pid})"
    ), line
    assert controller.proc.poll() is None
    assert httpx.get(f"{controller.api}/health", timeout=5).status_code == 200


def test_capture_finds_the_saved_token_and_refuses_an_unknown_device_and_bad_input(
    controller: RunningController, mosquitto: Mosquitto
) -> None:
    api = ["--api", controller.api]
    register(mosquitto, controller.api, "porch-cam")
    # No --token, no CAMFLEET_TOKEN: the token `controller run` saved for this user is used.
    sent = camfleet("capture", "porch-cam", *api)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("COMMAND") and "porch-cam" in sent.stdout

    # An id no device can have: that, not "never connected" (--allow-unknown cannot help).
    for allow in ((), ("--allow-unknown",)):
        bad = one_line_error(camfleet("capture", "NAME", *allow, *api))
        assert bad.startswith("camfleet: error: invalid device id 'NAME': use 1-64 of a-z"), bad

    refused = one_line_error(camfleet("capture", "porch-cma", *api))
    assert "no device 'porch-cma' has ever connected" in refused and "--allow-unknown" in refused
    listed = httpx.get(f"{controller.api}/api/v1/commands?device=porch-cma", timeout=5).json()
    assert listed["items"] == []

    queued = camfleet("capture", "porch-cma", "--allow-unknown", "--json", *api)
    assert queued.returncode == 0, queued.stderr
    assert '"device_id": "porch-cma"' in queued.stdout

    # config set: an unknown key is one line listing the valid ones as the docs spell them.
    line = one_line_error(camfleet("config", "set", "porch-cam", "camera.nosuch=1", *api))
    assert line.startswith("camfleet: error: invalid config: unknown key camera.nosuch: use one "
                           "of width, height, jpeg_quality,"), line  # fmt: skip
    assert "jpegQuality" not in line


def test_without_a_token_the_message_says_none_was_given_and_where_to_find_one(
    controller: RunningController, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    register(mosquitto, controller.api, "shed-cam")
    elsewhere = {"XDG_CONFIG_HOME": str(tmp_path / "another-user")}
    line = one_line_error(camfleet("capture", "shed-cam", "--api", controller.api, env=elsewhere))
    assert "no API token was given" in line
    assert "DATA/api-token" in line and str(tmp_path / "another-user") in line

    wrong = one_line_error(
        camfleet("capture", "shed-cam", "--api", controller.api, env={"CAMFLEET_TOKEN": "nope"})
    )
    assert f"the API at {controller.api} refused the token from --token or CAMFLEET_TOKEN" in wrong

"""The camfleet command: help, user errors as one line, proto decode/watch, broker run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from camfleet.mosquitto import free_port
from camfleet.proto import codec, topics
from camfleet.proto.topics import Kind
from tests.proto.mqtt_helpers import publish
from tests.proto.samples import SAMPLES

CAMFLEET = [sys.executable, "-m", "camfleet"]


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    raw = subprocess.run(
        [*CAMFLEET, *args], input=stdin, capture_output=True, timeout=60, check=False
    )
    return subprocess.CompletedProcess(
        raw.args, raw.returncode, raw.stdout.decode(), raw.stderr.decode()
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("camfleet: error:") and words in lines[0], lines


def test_help_lists_every_subcommand() -> None:
    result = run("--help")
    assert result.returncode == 0
    for name in ("controller", "edge", "sim", "demo", "devices", "capture", "frames", "proto"):
        assert f"  {name}" in result.stdout


def test_unknown_subcommand_is_a_usage_error() -> None:
    result = run("nonsense")
    assert result.returncode == 2 and "No such command" in result.stderr


def test_proto_decode_prints_json(tmp_path: Path) -> None:
    payload = tmp_path / "state.bin"
    payload.write_bytes(codec.encode(SAMPLES[Kind.STATE]))
    result = run("proto", "decode", "camfleet/v1/cam-1/state", str(payload))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["kind"] == "state"
    assert out["message"]["presence"] == "PRESENCE_ONLINE" and out["message"]["session"] == 7


def test_proto_decode_summarises_image_data(tmp_path: Path) -> None:
    frame = SAMPLES[Kind.FRAME]
    result = run("proto", "decode", "camfleet/v1/cam-1/frame", "-", stdin=codec.encode(frame))
    assert result.returncode == 0, result.stderr
    message = json.loads(result.stdout)["message"]
    assert message["data_bytes"] == len(frame.data)  # type: ignore[attr-defined]
    assert message["sha256"] == frame.sha256.hex()  # type: ignore[attr-defined]


def test_proto_decode_of_garbage_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\xff" * 9)
    assert_one_line_error(
        run("proto", "decode", "camfleet/v1/cam-1/frame", str(bad)), "bad_protobuf"
    )
    assert_one_line_error(
        run("proto", "decode", "camfleet/v1/CAM/frame", str(bad)), "invalid device id 'CAM'"
    )


def read_line(proc: subprocess.Popen[str], timeout: float = 20.0, stderr: bool = False) -> str:
    """The next stdout (or stderr) line of ``proc``, or fail after ``timeout`` seconds."""
    got: list[str] = []
    ready = threading.Event()
    stream = proc.stderr if stderr else proc.stdout

    def read() -> None:
        assert stream is not None
        got.append(stream.readline())
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    assert ready.wait(timeout), "no output line in time"
    return got[0]


def test_proto_watch_prints_messages_and_errors(shared_mosquitto) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(
        [
            *CAMFLEET,
            "proto",
            "watch",
            "--broker",
            shared_mosquitto.url,
            "--device",
            "watched",
            "--count",
            "2",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    state_topic = topics.device_topic("watched", Kind.STATE)
    host, port = shared_mosquitto.host, shared_mosquitto.port
    publish(host, port, [(state_topic, codec.encode(SAMPLES[Kind.STATE]), True)])
    # The retained state reaches the watcher once it has subscribed: then send the garbage.
    first = json.loads(read_line(proc))
    publish(host, port, [(topics.device_topic("watched", Kind.ACK), b"\x08\x08garbage", False)])
    second = json.loads(read_line(proc))
    assert proc.wait(60) == 0
    assert first["topic"] == state_topic and first["message"]["session"] == 7
    assert second["error"] in ("bad_protobuf", "wrong_kind")


def test_proto_watch_with_an_unreachable_broker_is_one_clear_line() -> None:
    port = free_port()
    result = run("proto", "watch", "--broker", f"mqtt://127.0.0.1:{port}", "--count", "1")
    assert_one_line_error(result, "cannot reach the broker")


def test_bad_broker_url_is_one_clear_line() -> None:
    assert_one_line_error(run("proto", "watch", "--broker", "http://x"), "scheme must be mqtt")


def test_broker_run_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*CAMFLEET, "broker", "run", "--port", str(port), "--data", str(tmp_path / "b")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = read_line(proc)
    assert f"mqtt://127.0.0.1:{port}" in line
    publish("127.0.0.1", port, [("camfleet/v1/x/event", b"hello", False)])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0


def test_proto_watch_prints_the_controller_state_once_in_columns_and_a_summary_in_words(
    shared_mosquitto,  # type: ignore[no-untyped-def]
) -> None:
    from camfleet.proto.v1 import state_pb2

    root = "watchcols"  # a root of its own on the shared broker: only this test's messages
    host, port = shared_mosquitto.host, shared_mosquitto.port
    presence = state_pb2.ControllerState(presence=state_pb2.PRESENCE_ONLINE, started_at_ms=1)
    device_state = topics.device_topic("cols-cam", Kind.STATE, root)
    controller_state = topics.controller_state_topic(root)
    publish(
        host,
        port,
        [
            (controller_state, codec.encode(presence), True),
            (device_state, codec.encode(SAMPLES[Kind.STATE]), True),
        ],
    )
    proc = subprocess.Popen(
        [
            *CAMFLEET,
            "proto",
            "watch",
            "--broker",
            shared_mosquitto.url,
            "--root",
            root,
            "--count=3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    retained = [read_line(proc), read_line(proc)]
    # Only after both retained messages: a third, live one. A duplicate would have been third.
    ack_topic = topics.device_topic("cols-cam", Kind.ACK, root)
    publish(host, port, [(ack_topic, b"\x08\x08garbage", False)])
    live = read_line(proc)
    assert proc.wait(60) == 0
    assert proc.stderr is not None
    closing = proc.stderr.read().strip().splitlines()[-1]
    assert sorted(line.split()[0] for line in retained) == sorted([controller_state, device_state])
    assert live.split()[0] == ack_topic
    for line in [*retained, live]:
        flag = "retained" if line in retained else ""
        # Columns: the topic padded to one width, the retained flag padded to one width, JSON.
        assert line[:44].rstrip() == line.split()[0] and line[44] == " "
        assert line[45:53].rstrip() == flag and line[53:55] == " {"
    reason = json.loads(live[54:])["error"]
    assert closing == f"# 3 messages: 2 decoded, 1 error (1 {reason})"


def test_broker_run_on_a_taken_port_says_why_and_leaves_the_running_broker_alone(
    tmp_path: Path,
) -> None:
    port = free_port()
    first_dir = tmp_path / "first"
    first = subprocess.Popen(
        [*CAMFLEET, "broker", "run", "--port", str(port), "--data", str(first_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert f"mqtt://127.0.0.1:{port}" in read_line(first)
        conf = first_dir / "mosquitto.conf"
        before = (conf.read_text(), conf.stat().st_mtime_ns)

        # Its own directory, the same port: mosquitto's reason, not an empty colon.
        other = run("broker", "run", "--port", str(port), "--data", str(tmp_path / "second"))
        assert_one_line_error(
            other, f"mosquitto did not start on port {port}: Error: Address already in use"
        )
        # The first one's directory (the default --data of both): refused before writing there.
        for try_port in (port, free_port()):
            same_dir = run("broker", "run", "--port", str(try_port), "--data", str(first_dir))
            assert_one_line_error(same_dir, f"another broker uses {first_dir} (pid {first.pid}")
        assert (conf.read_text(), conf.stat().st_mtime_ns) == before
        publish("127.0.0.1", port, [("camfleet/v1/x/event", b"still serving", False)])
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0


def test_controller_run_says_on_every_attempt_that_the_broker_is_unreachable(
    tmp_path: Path,
) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [*CAMFLEET, "controller", "run", "--broker", url, "--data", str(tmp_path), "--http", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        attempts: list[str] = []
        while len(attempts) < 2:  # paho's second attempt comes 3 s after the first
            line = read_line(proc, stderr=True)
            assert line, "the controller exited"
            if "cannot reach the broker" in line:
                attempts.append(line)
    finally:
        proc.terminate()
        proc.wait(60)
    assert (
        f"cannot reach the broker at {url} (attempt 1 failed); retrying with a backoff"
        in (attempts[0])
    )
    assert f"{url} (attempt 2 failed, " in attempts[1] and "s after attempt 1)" in attempts[1]


def test_sim_esp32_says_the_broker_is_unreachable_at_start_and_on_every_wake(
    tmp_path: Path,
) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    result = run(
        "sim", "esp32", "--broker", url, "--wakes", "2", "--time-scale", "0.001",
        "--interval", "60", "--state-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == (
        f"camfleet sim: cannot reach the broker at {url}: Connection refused; "
        "every node retries on each wake"
    )
    for wake, line in enumerate(lines[1:], start=1):
        assert line.startswith(
            f"camfleet sim: sim-esp32-0 offline on wake {wake} (broker unreachable"
        )
        assert line.endswith("next attempt in 60 s (simulated)")
    assert len(lines) == 3


def test_proto_watch_count_stops_at_exactly_that_many_messages(shared_mosquitto) -> None:  # type: ignore[no-untyped-def]
    root = "watchcount"
    births = [
        (topics.device_topic(f"n{i}", Kind.STATE, root), codec.encode(SAMPLES[Kind.STATE]), True)
        for i in range(20)
    ]
    publish(shared_mosquitto.host, shared_mosquitto.port, births)
    result = run(
        "proto", "watch", "--broker", shared_mosquitto.url, "--root", root, "--count", "2"
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert result.stderr.strip().splitlines()[-1] == "# 2 messages: 2 decoded"


def test_proto_watch_refused_by_the_broker_says_so_and_why(tmp_path: Path) -> None:
    """No or wrong credentials: the CONNACK's reason on one line, not a silent wait for ever."""
    from camfleet.mosquitto import Mosquitto

    broker = Mosquitto(tmp_path / "b", extra_config="allow_anonymous false")
    broker.start()
    try:
        for url in (broker.url, f"mqtt://_dashboard:wrong@127.0.0.1:{broker.port}"):
            result = run("proto", "watch", "--broker", url, "--count", "1")
            assert_one_line_error(
                result,
                f"the broker at {url.replace(':wrong', '')} refused the connection: Not authorized",
            )
    finally:
        broker.stop()


def test_broker_init_force_is_refused_while_a_broker_runs_from_that_directory(
    tmp_path: Path,
) -> None:
    from camfleet.broker_config.profiles import ConfiguredMosquitto

    folder = tmp_path / "broker"
    made = run("broker", "init", str(folder), "--profile", "dev", "--port", str(free_port()))
    assert made.returncode == 0, made.stderr
    broker = ConfiguredMosquitto(folder)
    broker.start()
    try:
        settings = (folder / "mosquitto.conf").read_bytes()
        again = run("broker", "init", str(folder), "--profile", "dev", "--force")
        assert_one_line_error(
            again, f"a broker is running from {folder} (pid {os.getpid()}, port {broker.port})"
        )
        assert (folder / "mosquitto.conf").read_bytes() == settings
    finally:
        broker.stop()
    # Stopped: the lock went with it, and --force does what it says.
    assert run("broker", "init", str(folder), "--profile", "dev", "--force").returncode == 0


def test_controller_config_file_errors_name_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "controller.toml"
    conf.write_text('[controller]\ntick_s = "fast"\n')
    result = run("controller", "run", "--config", str(conf), "--data", str(tmp_path / "d"))
    assert_one_line_error(result, f"config file {conf}: tick_s: expected float, got 'fast'")
    conf.write_text("[retention.default]\nkeep = 1\n")
    result = run("controller", "run", "--config", str(conf), "--data", str(tmp_path / "d"))
    assert_one_line_error(result, f"config file {conf}: retention.default: unknown keys ['keep']")

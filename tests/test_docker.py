"""docker-compose.yml and the Dockerfile, checked without a Docker engine: `docker-compose
config` (Debian's docker-compose validates the file against the compose schema), the files the
Dockerfile copies, and a broker directory written for the container."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from camfleet.broker_config.profiles import CONTAINER_PLUGIN, init_broker

REPO = Path(__file__).resolve().parents[1]
ENV = {"PATH": "/usr/bin:/bin", "CAMFLEET_BROKER": "mqtt://_controller:pw@mosquitto:1883"}


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker-compose", "-f", str(path), "config"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=path.parent,
        timeout=60,
    )


def test_compose_file_is_valid_and_publishes_only_what_it_should(tmp_path: Path) -> None:
    run = compose_config(REPO / "docker-compose.yml")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "image: eclipse-mosquitto:2" in out
    assert "/camfleet-broker/mosquitto.conf" in out
    # plain MQTT and the API on the host's loopback only; TLS and websockets for the network
    assert "- 127.0.0.1:1883:1883/tcp" in out and "- 127.0.0.1:8080:8080/tcp" in out
    assert sorted(re.findall(r"published: (\d+)", out)) == ["8883", "8884", "9001"]

    # the validation is real: an unknown key is refused
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        (REPO / "docker-compose.yml")
        .read_text()
        .replace("    restart:", "    bogus: 1\n    restart:", 1)
    )
    bad = compose_config(broken)
    assert bad.returncode != 0 and "bogus" in bad.stderr


def test_dockerfile_copies_every_area_the_package_is_built_from() -> None:
    text = (REPO / "Dockerfile").read_text()
    copied = {m.split()[0] for m in re.findall(r"^COPY (.+)$", text, re.M)}
    for src in copied:
        for name in src.split():
            assert (REPO / name).exists(), name
    setup = (REPO / "setup.py").read_text()
    areas = set(re.findall(r'"camfleet[.a-z_0-9]*": "([a-z_0-9]+)"', setup))
    assert areas and areas <= {c.split()[0] for c in re.findall(r"^COPY (\S+)", text, re.M)}


def test_a_broker_directory_for_the_container_names_only_paths_inside_it(tmp_path: Path) -> None:
    folder = tmp_path / "camfleet-broker"
    notes = init_broker(folder, "prod", container="/camfleet-broker")
    conf = (folder / "mosquitto.conf").read_text()
    paths = re.findall(r"^(?:cafile|certfile|keyfile|plugin_opt_config_file|persistence_location)"
                       r" (\S+)", conf, re.M)  # fmt: skip
    assert paths and all(p.startswith("/camfleet-broker/") for p in paths), paths
    assert str(tmp_path) not in conf
    assert f"plugin {CONTAINER_PLUGIN}" in conf
    # the compose network reaches the plain listener; the file publishes it on loopback only
    assert re.search(r"^listener 1883$", conf, re.M)
    assert "protocol websockets" in conf  # the image serves them
    assert any("docker compose up" in n for n in notes)
    run = subprocess.run(
        ["camfleet", "broker", "run", "--config", str(folder)],
        capture_output=True, text=True, timeout=60,
        env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"},
    )  # fmt: skip
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        f"camfleet: error: {folder} was written for a container (--container /camfleet-broker): "
        "run it with docker compose"
    ]

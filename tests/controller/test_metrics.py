"""/metrics on a fresh controller: every counter at 0 with its HELP text, no per-install labels."""

from __future__ import annotations

import ast
import re
import time
from pathlib import Path

from camfleet.controller.metric_catalog import COUNTERS

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "camfleet_controller_"


def _documented_counters() -> set[str]:
    text = (ROOT / "docs" / "controller.md").read_text()
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    counters = section.split("Gauges:", 1)[0]
    return set(re.findall(r"`([a-z_]+_total)(?:\{[^}]*\})?`", counters))


def _incremented_in_code() -> set[str]:
    """Names passed to ``.inc("...")`` anywhere in the controller."""
    names = set()
    for path in (ROOT / "controller").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "inc"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value)
    return names


def _parse(exposition: str) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
    helps: dict[str, str] = {}
    samples: dict[str, dict[str, float]] = {}
    for line in exposition.splitlines():
        if line.startswith("# HELP "):
            name, _, text = line[len("# HELP ") :].partition(" ")
            helps[name] = text
        elif line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            name, _, labels = series.partition("{")
            samples.setdefault(name, {})["{" + labels if labels else ""] = float(value)
    return helps, samples


def test_every_counter_is_declared() -> None:
    documented = _documented_counters()
    used = _incremented_in_code()
    assert documented, "the Metrics section of docs/controller.md lists no counters"
    assert documented <= set(COUNTERS), documented - set(COUNTERS)
    assert used <= set(COUNTERS), used - set(COUNTERS)
    assert set(COUNTERS) <= documented, f"undocumented: {set(COUNTERS) - documented}"


def _await_own_presence_echo(ctl, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until the controller has received its own ONLINE presence back from the broker.

    It subscribes to the whole root, so its presence comes back and is counted as
    ``unhandled_total{kind="controller_state"}``; scraping before or after that echo raced.
    """
    deadline = time.monotonic() + timeout
    while ctl.metrics.get("unhandled_total", kind="controller_state") < 1:
        assert time.monotonic() < deadline, "the controller never received its own presence"
        time.sleep(0.01)


def test_fresh_controller_scrapes_every_counter_at_zero(controllers) -> None:  # type: ignore[no-untyped-def]
    ctl = controllers()
    _await_own_presence_echo(ctl)
    helps, samples = _parse(ctl.metrics.exposition())
    for name, (help_text, labels) in COUNTERS.items():
        full = PREFIX + name
        assert full in samples, f"{full} is not scraped before its first increment"
        assert helps[full] == help_text
        assert helps[full] != name
        expected = 1
        for values in labels.values():
            expected *= len(values)
        assert len(samples[full]) == expected, full
        # A fresh controller has done nothing yet, except measure the time of writer stages
        # and hear its own presence once.
        if name == "unhandled_total":
            own = '{kind="controller_state"}'
            assert samples[full].pop(own) == 1.0, full
        if not name.startswith("stage_"):
            assert set(samples[full].values()) == {0.0}, full
    assert samples[PREFIX + "malformed_total"]['{kind="frame",reason="bad_protobuf"}'] == 0


def test_no_label_value_carries_the_instance_id(controllers) -> None:  # type: ignore[no-untyped-def]
    ctl = controllers()
    text = ctl.metrics.exposition()
    threads = [line for line in text.splitlines() if line.startswith(PREFIX + "thread_cpu")]
    assert any('thread="paho-mqtt-client"' in line for line in threads), threads
    assert ctl.instance_id not in text


def test_grafana_dashboard_uses_only_exported_metrics(controllers) -> None:  # type: ignore[no-untyped-def]
    import json

    ctl = controllers()
    _, samples = _parse(ctl.metrics.exposition())
    dashboard = json.loads((ROOT / "docs" / "grafana-camfleet.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(camfleet_controller_[a-z_]+)", target["expr"])
    }
    assert len(used) > 20
    assert used <= set(samples), used - set(samples)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))

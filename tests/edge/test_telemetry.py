"""Board readings from /sys and /proc."""

from __future__ import annotations

from camfleet.edge import telemetry


def zone(root, name: str, kind: str, millideg: str) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "type").write_text(kind + "\n")
    (d / "temp").write_text(millideg + "\n")


def test_cpu_temperature_prefers_a_cpu_zone(tmp_path):
    zone(tmp_path, "thermal_zone0", "acpitz", "27800")
    zone(tmp_path, "thermal_zone1", "cpu-thermal", "51540")  # Raspberry Pi
    assert telemetry.cpu_temperature_c(tmp_path) == 51.54


def test_cpu_temperature_falls_back_to_the_first_zone_or_none(tmp_path):
    assert telemetry.cpu_temperature_c(tmp_path) is None  # containers have no thermal zones
    zone(tmp_path, "thermal_zone0", "acpitz", "27800")
    zone(tmp_path, "thermal_zone1", "broken", "n/a")
    assert telemetry.cpu_temperature_c(tmp_path) == 27.8


def test_sample_fields(tmp_path):
    t = telemetry.read(
        session=3, spool_dir=tmp_path, spool_depth=2, spool_bytes=10, camera_status="ok"
    )
    assert t.session == 3 and t.spool_depth == 2 and t.spool_bytes == 10
    assert t.uptime_ms > 0 and t.mem_free > 0 and t.disk_free > 0 and t.cpu_load >= 0

"""The dashboard in a real headless Chromium against a controller with simulated devices."""

from __future__ import annotations

import re

import httpx
from PIL import Image
from playwright.sync_api import expect

from camfleet.proto import codec
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import telemetry_pb2
from camfleet.testing.controller_process import Waiter
from tests.ota_helpers import signed_image

from .conftest import TOKEN, Dash


def _telemetry(dev, battery: float, rssi: int, spool: int = 0) -> None:  # type: ignore[no-untyped-def]
    dev.publish_raw(
        Kind.TELEMETRY.value,
        codec.encode(
            telemetry_pb2.Telemetry(
                timestamp_ms=1,
                session=dev.session,
                battery_pct=battery,
                rssi_dbm=rssi,
                spool_depth=spool,
            )
        ),
    )


def _states(dash: Dash) -> dict[str, str]:
    with dash.ctl.db.read() as tx:
        rows = tx.query("SELECT * FROM devices")
    return {r["device_id"]: dash.ctl.device_state(r) for r in rows}


def _fleet(dash: Dash):  # type: ignore[no-untyped-def]
    """An online camera with pictures and telemetry, a sleeper, one gone offline by its will."""
    waiter = Waiter(dash.ctl)
    online = dash.device("yard", groups=("garden",))
    dash.send_picture(online)
    _telemetry(online, 81.0, -58, spool=2)
    sleeper = dash.device("gate", groups=("garden",), capabilities=("jpeg", "deep_sleep"))
    dash.send_picture(sleeper)
    _telemetry(sleeper, 44.0, -77)
    gone = dash.device("shed")
    assert sleeper.wait_receipted(timeout=20) and online.wait_receipted(timeout=20)
    sleeper.sleep(1800)
    assert gone.client is not None
    gone.client.loop_stop()
    sock = gone.client.socket()
    assert sock is not None
    sock.close()  # the broker publishes its will
    want = {online.device_id: "online", sleeper.device_id: "asleep", gone.device_id: "offline"}
    assert waiter.wait_for(lambda: _states(dash) == want, timeout=30), _states(dash)

    def telemetry() -> int:
        with dash.ctl.db.read() as tx:  # a new snapshot each time
            return int(tx.scalar("SELECT COUNT(*) FROM telemetry"))

    assert waiter.wait_for(lambda: telemetry() == 2, timeout=20)
    return online, sleeper, gone


def test_grid_shows_every_device_with_its_state(dash: Dash, open_page) -> None:  # type: ignore[no-untyped-def]
    online, sleeper, gone = _fleet(dash)
    w = open_page("#/")
    page = w.page
    for dev, state in ((online, "online"), (sleeper, "asleep"), (gone, "offline")):
        card = page.locator(f'.card[data-device="{dev.device_id}"]')
        expect(card.locator(".badge")).to_have_attribute("data-state", state)
    yard = page.locator(f'.card[data-device="{online.device_id}"]')
    expect(yard).to_contain_text("81%")
    expect(yard).to_contain_text("-58 dBm")
    expect(yard).to_contain_text("spool 2")
    expect(yard).to_contain_text("fw 1.0.0")
    expect(yard).to_contain_text("garden")
    expect(yard.locator("img")).to_have_js_property("complete", True)
    assert yard.locator("img").evaluate("img => img.naturalWidth") > 0  # a real thumbnail
    expect(page.locator(f'.card[data-device="{sleeper.device_id}"] .badge')).to_contain_text(
        re.compile(r"asleep, wakes in (29|30) min")
    )
    expect(page.locator(f'.card[data-device="{gone.device_id}"] .badge')).to_contain_text(
        "offline, last seen"
    )
    w.screenshot("fleet-grid")

    page.select_option("#filter-state", "asleep")
    expect(page.locator(".card")).to_have_count(1)
    page.select_option("#filter-state", "")
    page.select_option("#filter-group", "garden")
    expect(page.locator(".card")).to_have_count(2)
    page.select_option("#filter-group", "")
    page.fill("#search", "shed")
    expect(page.locator(".card")).to_have_count(1)
    expect(page.locator(".card")).to_have_attribute("data-device", gone.device_id)

    # Live: the sleeper wakes; its card says online without a reload.
    page.fill("#search", "")
    page.evaluate("window.__same_page = true")
    sleeper.wake()
    expect(page.locator(f'.card[data-device="{sleeper.device_id}"] .badge')).to_have_attribute(
        "data-state", "online"
    )
    assert page.evaluate("window.__same_page") is True

    phone = open_page("#/", width=390, height=844)
    expect(phone.page.locator(".card")).to_have_count(3)
    phone.screenshot("fleet-grid-phone")


def test_device_page_live_frame_capture_and_config(dash: Dash, open_page) -> None:  # type: ignore[no-untyped-def]
    dev = dash.device("porch")
    first = dash.send_picture(dev)
    assert dev.wait_receipted(timeout=20)
    w = open_page(f"#/device/{dev.device_id}")
    page = w.page
    latest = page.locator("#latest-frame")
    expect(latest).to_have_attribute("data-frame", first)
    page.evaluate("window.__same_page = true")

    # A new frame appears without a reload (pushed by the controller's event stream).
    second = dash.send_picture(dev)
    expect(latest).to_have_attribute("data-frame", second)
    expect(latest).to_have_js_property("complete", True)
    assert latest.evaluate("img => img.naturalWidth") == 320
    expect(page.locator("#gallery img")).to_have_count(2)

    # Capture: the page asks for the token, the device captures, its frame shows.
    page.click("#action-capture")
    page.fill("#token-input", TOKEN)
    page.click("#token-save")
    expect(page.locator("#action-status")).to_contain_text("Capture: command")
    expect(latest).not_to_have_attribute("data-frame", second)
    expect(page.locator("#gallery img")).to_have_count(3)
    with dash.ctl.db.read() as tx:
        captured = tx.query("SELECT command_id FROM frames WHERE command_id != ''")
    assert len(captured) == 1
    expect(page.locator("#commands")).to_contain_text("capture")
    assert "dash-token" not in " ".join(w.requests)  # never in a URL

    # A config edit persists and reaches the device as its desired config.
    editor = page.locator("#config-editor")
    editor.fill('{"camera": {"jpeg_quality": 55}}')
    expect(page.locator("#config-error")).to_have_text("")
    page.click("#config-save")
    expect(page.locator("#config-status")).to_contain_text("saved")
    assert dev.wait_until(
        lambda: any(d.config.camera.jpeg_quality == 55 for d in dev.desired), timeout=20
    )
    with dash.ctl.db.read() as tx:
        status = dash.ctl.desired.status(tx, dev.device_id)
    assert status["overrides"] == {"camera": {"jpeg_quality": 55}}

    # An invalid config: the error shows inline, Save is refused, nothing is stored.
    editor.fill('{"camera": {"jpeg_quality": 500}}')
    expect(page.locator("#config-error")).to_have_text("camera.jpeg_quality must be within 1..100")
    expect(page.locator("#config-save")).to_be_disabled()
    editor.fill('{"camera": ')
    expect(page.locator("#config-error")).to_contain_text("not valid JSON")
    editor.fill('{"camera": {"no_such_setting": 1}}')
    expect(page.locator("#config-error")).to_contain_text("no_such_setting")
    with dash.ctl.db.read() as tx:
        assert dash.ctl.desired.status(tx, dev.device_id)["overrides"] == {
            "camera": {"jpeg_quality": 55}
        }
    editor.fill('{"camera": {"jpeg_quality": 55}}')
    expect(page.locator("#config-error")).to_have_text("")
    assert page.evaluate("window.__same_page") is True
    w.screenshot("device-page")

    page.locator("#gallery img").first.click()
    expect(page.locator("#viewer-img")).to_have_js_property("complete", True)
    assert page.locator("#viewer-img").evaluate("img => img.naturalWidth") == 320
    page.keyboard.press("Escape")

    # The day's frames as a timelapse GIF, made by the controller, downloaded by the browser.
    with page.expect_download() as download:
        page.click("#timelapse-gif")
    path = download.value.path()
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 3
    expect(page.locator("#timelapse-status")).to_contain_text("GIF ready")


def test_events_and_ota_pages(dash: Dash, open_page) -> None:  # type: ignore[no-untyped-def]
    dev = dash.device("barn")
    dev.publish_raw(
        Kind.EVENT.value,
        codec.encode(
            telemetry_pb2.Event(
                timestamp_ms=1,
                session=dev.session,
                type="motion",
                severity=telemetry_pb2.SEVERITY_INFO,
                message="<b>cat</b> at the door",
            )
        ),
    )
    w = open_page("#/events")
    expect(w.page.locator("#fleet-events")).to_contain_text("<b>cat</b> at the door")  # as text
    ota = open_page("#/ota")
    expect(ota.page.locator("#rollouts")).to_contain_text("no rollouts")


def test_ota_page_shows_a_rollouts_progress(dash: Dash, open_page, release_key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    waiter = Waiter(dash.ctl)
    dev = dash.device("fw", platform="esp32")

    def known() -> bool:
        with dash.ctl.db.read() as tx:
            firmware = tx.scalar(
                "SELECT firmware FROM devices WHERE device_id = ?", (dev.device_id,)
            )
        return bool(firmware == "1.0.0")

    assert waiter.wait_for(known, 20)
    r = httpx.put(f"{dash.url}/api/v1/ota/device-keys/{dev.device_id}", headers=auth,
                  json={"hmac_key_hex": (b"k" * 32).hex()})  # fmt: skip
    assert r.status_code == 200, r.text
    image = signed_image("1.5.0", 80_000, release_key, tmp_path)
    r = httpx.post(f"{dash.url}/api/v1/ota/artifacts", headers=auth, content=image,
                   params={"version": "1.5.0", "filename": "fw.bin"}, timeout=60)  # fmt: skip
    assert r.status_code == 201, r.text
    artifact = r.json()["id"]
    r = httpx.post(f"{dash.url}/api/v1/ota/rollouts", headers=auth, timeout=30, json={
        "artifact": artifact, "target": f"devices:{dev.device_id}", "canary": 1,
        "phases": "100%", "max_failure": "0%", "min_sample": 1, "device_timeout": "1h",
    })  # fmt: skip
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert dev.wait_until(lambda: len(dev.commands) == 1, 60)
    total = dev.commands[0].command.ota_offer.size // 4096

    w = open_page("#/ota")
    page = w.page
    section = page.locator(f'[data-rollout="{rid}"]')
    expect(section).to_contain_text("1.5.0")
    row = section.locator(f'tr[data-device="{dev.device_id}"]')
    expect(row).to_contain_text("offered")

    # The device reports progress: the page follows without a reload.
    progress = telemetry_pb2.Event(type="ota", message="downloading")
    progress.ota.artifact_id, progress.ota.phase = artifact, "downloading"
    progress.ota.blocks_done, progress.ota.blocks_total = total // 2, total
    dev.publish_raw(Kind.EVENT.value, codec.encode(progress))
    expect(row.locator(".progress")).to_have_attribute("title", f"{total // 2}/{total} blocks")
    w.screenshot("ota-page")

    page.click(f'[data-rollout="{rid}"] button:text("pause")')
    page.fill("#token-input", TOKEN)
    page.click("#token-save")
    expect(page.locator(f'[data-rollout="{rid}"]')).to_have_attribute("data-state", "paused")


def test_schedules_page_lists_and_disables(dash: Dash, open_page) -> None:  # type: ignore[no-untyped-def]
    dev = dash.device("sched")
    r = httpx.post(
        f"{dash.url}/api/v1/schedules",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={
            "target_kind": "device",
            "target": dev.device_id,
            "kind": "cron",
            "spec": "0 6 * * *",
        },
        timeout=30,
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    w = open_page("#/schedules")
    row = w.page.locator(f'tr[data-schedule="{sid}"]')
    expect(row).to_contain_text(f"device {dev.device_id}")
    expect(row).to_contain_text("cron 0 6 * * *")
    row.locator("button").click()
    w.page.fill("#token-input", TOKEN)
    w.page.click("#token-save")
    expect(w.page.locator(f'tr[data-schedule="{sid}"]')).to_contain_text("disabled")
    with dash.ctl.db.read() as tx:
        assert not dash.ctl.scheduler.to_json(
            tx.one("SELECT * FROM schedules WHERE id = ?", (sid,))
        )["enabled"]

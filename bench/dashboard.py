"""Dashboard timing in Debian's headless Chromium: the fleet grid with 200 devices, and a device
page whose day gallery holds 1,000 frames.

    .venv/bin/python bench/dashboard.py [--devices 200] [--frames 1000] [--runs 3]

A real mosquitto and controller (HTTP on 127.0.0.1); devices are published by one MQTT client
(a birth, a real 320x240 JPEG and a telemetry message each; every third asleep), the gallery
device's 1,000 frames likewise. For each page, in a fresh browser context (no HTTP cache), it
reports the median of ``--runs`` loads of:

- first contentful paint (the browser's ``paint`` entry);
- view ready: the page's data fetched and its DOM built (``performance.mark`` by app.js);
- thumbnails shown: every thumbnail on screen decoded (the device page is scrolled to its
  gallery once built); cold: the first load, when the controller makes them with Pillow; warm:
  later loads, from its thumbnail cache (the browser's cache is new each load).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Page, sync_playwright

from camfleet.mosquitto import Mosquitto, free_port
from camfleet.proto import codec, topics
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import state_pb2, telemetry_pb2
from camfleet.testing.browser import launch
from camfleet.testing.controller_process import Waiter, start_controller
from camfleet.testing.pictures import picture_jpeg

VISIBLE_THUMBS_DONE = """() => {
  const imgs = [...document.querySelectorAll('.card img, #gallery img')].filter((img) => {
    const r = img.getBoundingClientRect();
    return r.top < innerHeight && r.bottom > 0;
  });
  return imgs.length > 0 && imgs.every((img) => img.complete && img.naturalWidth > 0);
}"""


def publish_fleet(broker: Mosquitto, devices: int, gallery_frames: int) -> str:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(200)
    client.connect(broker.host, broker.port)
    client.loop_start()
    now = int(time.time() * 1000)
    infos = []

    def pub(device: str, kind: Kind, payload: bytes, retain: bool = False) -> None:
        infos.append(client.publish(topics.device_topic(device, kind), payload, 1, retain))

    def birth(device: str, presence: int, next_wake_ms: int = 0) -> None:
        st = state_pb2.DeviceState(
            presence=presence,  # type: ignore[arg-type]
            session=1,
            timestamp_ms=now,
            firmware_version="1.4.2",
            platform="esp32",
            capabilities=["jpeg", "deep_sleep"],
            next_wake_ms=next_wake_ms,
            groups=[f"site-{int(device[-3:]) % 5}"] if device[-3:].isdigit() else [],
        )
        pub(device, Kind.STATE, codec.encode(st), retain=True)

    for i in range(devices):
        d = f"cam-{i:03d}"
        birth(d, state_pb2.PRESENCE_ONLINE)
        frame = codec.make_frame(picture_jpeg(i, label=d), session=1, seq=1, captured_at_ms=now)
        pub(d, Kind.FRAME, codec.encode(frame))
        t = telemetry_pb2.Telemetry(
            timestamp_ms=now,
            session=1,
            battery_pct=40 + i % 60,
            rssi_dbm=-50 - i % 40,
            spool_depth=i % 3,
        )
        pub(d, Kind.TELEMETRY, codec.encode(t))
        if i % 3 == 0:
            birth(d, state_pb2.PRESENCE_ASLEEP, now + 600_000)
    gallery = "gallery-cam"
    birth(gallery, state_pb2.PRESENCE_ONLINE)
    for seq in range(1, gallery_frames + 1):
        frame = codec.make_frame(
            picture_jpeg(seq), session=1, seq=seq, captured_at_ms=now - (gallery_frames - seq) * 20
        )
        pub(gallery, Kind.FRAME, codec.encode(frame))
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()
    return gallery


def load(page: Page, url: str, route: str, count_selector: str, count: int) -> dict[str, float]:
    page.goto(f"{url}/{route}")
    page.wait_for_function(
        f"document.querySelectorAll({count_selector!r}).length >= {count}", timeout=60_000
    )
    # The gallery starts below the first screen: go to it, as a person looking for it would.
    page.evaluate(f"document.querySelector({count_selector!r}).scrollIntoView()")
    page.wait_for_function(VISIBLE_THUMBS_DONE, timeout=60_000)
    return page.evaluate(
        """(route) => ({
        fcp: performance.getEntriesByName('first-contentful-paint')[0].startTime,
        ready: performance.getEntriesByName('view-ready ' + route)[0].startTime,
        thumbs: performance.now(),
    })""",
        route,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto")
        broker.start()
        port = free_port()
        ctl = start_controller(broker.url, Path(tmp) / "data", http=f"127.0.0.1:{port}")
        url = f"http://127.0.0.1:{port}"
        try:
            waiter = Waiter(ctl)
            gallery = publish_fleet(broker, args.devices, args.frames)
            total = args.devices + args.frames

            def stored() -> bool:
                with ctl.db.read() as tx:
                    return bool(tx.scalar("SELECT COUNT(*) FROM frames") >= total)

            assert waiter.wait_for(stored, timeout=300), "frames not stored"
            with sync_playwright() as p:
                browser = launch(p)
                for name, route, selector, count in (
                    (f"fleet grid, {args.devices} devices", "#/", ".card", args.devices),
                    (
                        f"device page, {args.frames}-frame gallery",
                        f"#/device/{gallery}",
                        "#gallery img",
                        args.frames,
                    ),
                ):
                    runs = []
                    for _ in range(args.runs + 1):
                        context = browser.new_context(viewport={"width": 1280, "height": 900})
                        runs.append(load(context.new_page(), url, route, selector, count))
                        context.close()
                    cold, warm = runs[0], runs[1:]
                    med = {k: statistics.median(r[k] for r in warm) for k in warm[0]}
                    print(f"{name}:")
                    print(f"  first contentful paint  {med['fcp']:7.0f} ms")
                    print(f"  view ready              {med['ready']:7.0f} ms")
                    print(
                        f"  thumbnails shown        {med['thumbs']:7.0f} ms warm, "
                        f"{cold['thumbs']:.0f} ms cold (made by Pillow on first request)"
                    )
                browser.close()
        finally:
            ctl.stop()
            broker.kill()


if __name__ == "__main__":
    main()

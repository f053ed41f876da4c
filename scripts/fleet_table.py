#!/usr/bin/env python3
"""A live table of the fleet from the broker alone: an example for people who build their own
dashboards (docs/protocol.md "Integration topics").

    .venv/bin/python scripts/fleet_table.py --broker mqtt://127.0.0.1:1883 [--once]

It reads only retained topics, so the whole table is there the moment it subscribes:

- ``camfleet/v1/+/state``: each device's last birth, sleep or will (``DeviceState`` protobuf,
  decoded with ``camfleet.proto.codec``): presence, session, firmware, next wake;
- ``camfleet/ha/+/telemetry``: battery, RSSI and spool depth (JSON, kept by the controller);
- ``camfleet/ha/+/last_frame``: the latest live frame's capture time (kept by the controller).

``--once`` prints the table after the retained messages and exits. To know they have all
arrived it publishes a marker to a topic of its own after the broker acknowledged the
subscriptions: a broker delivers one session's messages in order, so the marker comes last.
Without ``--once`` the table is redrawn as messages arrive (at most once a second).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.mqtt_url import BrokerUrl
from camfleet.proto import codec
from camfleet.proto.errors import ContractError
from camfleet.proto.v1 import state_pb2

PRESENCE = {
    state_pb2.PRESENCE_ONLINE: "online",
    state_pb2.PRESENCE_ASLEEP: "asleep",
    state_pb2.PRESENCE_OFFLINE: "offline",
}
COLUMNS = ("DEVICE", "STATE", "FIRMWARE", "BATTERY", "RSSI", "SPOOL", "NEXT WAKE", "LAST FRAME")


def _time(ms: int | None) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render(fleet: dict[str, dict[str, Any]]) -> str:
    rows = []
    for device, d in sorted(fleet.items()):
        t = d.get("telemetry") or {}
        rows.append(
            (
                device,
                d.get("state", "?"),
                d.get("firmware") or "-",
                "-" if t.get("battery_pct") is None else f"{t['battery_pct']:.0f}%",
                "-" if t.get("rssi_dbm") is None else f"{t['rssi_dbm']} dBm",
                "-" if t.get("spool_depth") is None else str(t["spool_depth"]),
                _time(d.get("next_wake_ms")) if d.get("state") == "asleep" else "-",
                d.get("last_frame") or "-",
            )
        )
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    ap.add_argument("--root", default="camfleet", help="topic root of the fleet")
    ap.add_argument("--ha-prefix", default="camfleet/ha", help="the controller's ha_state_prefix")
    ap.add_argument("--once", action="store_true", help="print the table once and exit")
    ap.add_argument("--timeout", type=float, default=10.0, help="--once: give up after this")
    args = ap.parse_args()
    url = BrokerUrl.parse(args.broker)

    fleet: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    done = threading.Event()
    changed = threading.Event()
    marker = f"{args.ha_prefix}/_fleet_table/{secrets.token_hex(6)}"
    filters = [(f"{args.root}/v1/+/state", 1), (f"{args.ha_prefix}/+/telemetry", 1),
               (f"{args.ha_prefix}/+/last_frame", 1), (marker, 1)]  # fmt: skip

    def on_connect(client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        client.subscribe(filters)

    def on_subscribe(client, userdata, mid, rcs, props=None):  # type: ignore[no-untyped-def]
        client.publish(marker, b"end of retained", qos=1)

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        if msg.topic == marker:
            done.set()
            return
        parts = msg.topic.split("/")
        with lock:
            if msg.topic.endswith("/state") and msg.topic.startswith(f"{args.root}/v1/"):
                if not msg.payload:
                    return  # a cleared retained state
                try:
                    st = codec.decode_as(state_pb2.DeviceState, msg.payload).message
                except ContractError as exc:
                    print(f"skipped {msg.topic}: {exc}", file=sys.stderr)
                    return
                d = fleet.setdefault(parts[-2], {})
                d["state"] = PRESENCE.get(st.presence, "unknown")
                d["next_wake_ms"] = st.next_wake_ms
                if st.presence == state_pb2.PRESENCE_ONLINE:
                    d["firmware"] = st.firmware_version
            elif msg.topic.endswith("/telemetry"):
                try:
                    fleet.setdefault(parts[-2], {})["telemetry"] = json.loads(msg.payload)
                except ValueError:
                    return
            elif msg.topic.endswith("/last_frame"):
                fleet.setdefault(parts[-2], {})["last_frame"] = msg.payload.decode(errors="replace")
        changed.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-table-{marker[-12:]}")
    if url.username:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set()
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(url.host, url.port)
    except OSError as exc:
        print(f"fleet_table: cannot reach the broker at {args.broker}: {exc}", file=sys.stderr)
        return 1
    client.loop_start()
    try:
        if args.once:
            if not done.wait(args.timeout):
                print(f"fleet_table: no answer from {args.broker}", file=sys.stderr)
                return 1
            with lock:
                print(render(fleet))
            return 0
        while True:
            changed.wait()
            changed.clear()
            with lock:
                text = render(fleet)
            print("\033[2J\033[H" + text, flush=True)  # clear the terminal, then the table
            time.sleep(1.0)  # redraw at most once a second
    except KeyboardInterrupt:
        return 0
    finally:
        client.loop_stop()
        client.disconnect()


if __name__ == "__main__":
    sys.exit(main())

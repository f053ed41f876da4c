"""``camfleet proto``: decode camfleet payloads from a file or live from a broker."""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from typing import Any, BinaryIO

import click

from camfleet.errors import UserError
from camfleet.mqtt_url import BrokerUrl
from camfleet.proto import codec, topics
from camfleet.proto.errors import ContractError
from camfleet.proto.render import to_dict


@click.group()
def proto() -> None:
    """Decode and inspect camfleet MQTT payloads (the wire contract v1)."""


@proto.command()
@click.argument("topic")
@click.argument("payload", type=click.File("rb"), default="-")
@click.option("--root", default=topics.DEFAULT_ROOT, show_default=True, help="Topic root.")
def decode(topic: str, payload: BinaryIO, root: str) -> None:
    """Decode PAYLOAD (a file, or - for stdin) as the message TOPIC carries; print JSON.

    Example: mosquitto_sub -C 1 -t camfleet/v1/cam-1/state -N > s.bin;
    camfleet proto decode camfleet/v1/cam-1/state s.bin
    """
    data = payload.read()
    try:
        parsed, decoded = codec.decode_message(topic, data, root)
    except ContractError as exc:
        raise UserError(f"{topic}: {exc}") from None
    out: dict[str, Any] = {
        "topic": topic,
        "kind": parsed.kind.value,
        "message": to_dict(decoded.message),
    }
    if decoded.unknown_fields:
        out["unknown_fields"] = True
    click.echo(json.dumps(out, indent=2))


# Wide enough for `camfleet/v1/<a 20-character device id>/telemetry`: the columns after it line up
# for every topic but the longest.
TOPIC_WIDTH = 44


def summary(seen: Counter[str], as_json: bool) -> str:
    """The closing line: how many messages, how many decoded, which errors."""
    ok = seen.get("ok", 0)
    errors = {k: n for k, n in sorted(seen.items()) if k != "ok"}
    if as_json:
        return json.dumps({"messages": sum(seen.values()), "decoded": ok, "errors": errors})
    total = sum(seen.values())
    line = f"# {total} message{'s' if total != 1 else ''}: {ok} decoded"
    if errors:
        n = sum(errors.values())
        line += (
            f", {n} error{'s' if n != 1 else ''} ("
            + ", ".join(f"{count} {reason}" for reason, count in errors.items())
            + ")"
        )
    return line


@proto.command()
@click.option("--broker", default="mqtt://127.0.0.1:1883", show_default=True, help="Broker URL.")
@click.option("--device", default=None, help="Only this device (default: every device).")
@click.option("--kind", "kinds", multiple=True, help="Only these kinds (repeatable).")
@click.option("--root", default=topics.DEFAULT_ROOT, show_default=True, help="Topic root.")
@click.option("--count", type=int, default=0, help="Stop after N messages (0 = run until Ctrl-C).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def watch(
    broker: str, device: str | None, kinds: tuple[str, ...], root: str, count: int, as_json: bool
) -> None:
    """Subscribe to camfleet topics and print every message decoded, errors with their reason."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    url = BrokerUrl.parse(broker)
    try:
        wanted = [topics.Kind(k) for k in kinds] or list(topics.Kind)
        filters = [topics.device_filter(k, device, root) for k in wanted]
    except (ValueError, ContractError) as exc:
        raise UserError(str(exc)) from None
    if device is None:
        # `+/state` already matches `_controller/state`: a second filter for it would make the
        # broker deliver the controller's retained presence twice.
        if topics.Kind.STATE not in wanted:
            filters.append(topics.controller_state_topic(root))
        filters.append(f"{root}/v1/_group/+/cmd")
    seen: Counter[str] = Counter()
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if done.is_set():  # --count reached: what arrives before the disconnect is not shown
            return
        try:
            _, decoded = codec.decode_message(msg.topic, msg.payload, root)
            body: dict[str, object] = {"message": to_dict(decoded.message)}
            seen["ok"] += 1
        except ContractError as exc:
            body = {"error": exc.reason.value, "detail": exc.detail}
            seen[exc.reason.value] += 1
        if as_json:
            click.echo(json.dumps({"topic": msg.topic, "retained": bool(msg.retain), **body}))
        else:
            flag = "retained" if msg.retain else ""
            click.echo(
                f"{msg.topic:<{TOPIC_WIDTH}} {flag:<8} {json.dumps(body, separators=(',', ':'))}"
            )
        if count and sum(seen.values()) >= count:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    if url.username:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set()
    client.on_message = on_message
    refused: list[str] = []  # the CONNACK reason when the broker said no

    def on_connect(
        client: mqtt.Client, userdata: object, flags: object, rc: Any, p: object
    ) -> None:
        if rc.is_failure:  # wrong/no credentials, ACL: paho would retry silently for ever
            refused.append(str(rc))
            done.set()
            return
        client.subscribe([(t, 1) for t in filters])

    client.on_connect = on_connect
    try:
        client.connect(url.host, url.port)
    except OSError as exc:
        raise UserError(f"cannot reach the broker at {url}: {exc}") from None
    client.loop_start()
    try:
        done.wait()  # --count reached, or the broker refused us
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    if refused:
        raise UserError(f"the broker at {url} refused the connection: {refused[0]}")
    click.echo(summary(seen, as_json), err=True)
    sys.exit(0)

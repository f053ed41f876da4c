"""The edge agent's side of the OTA block protocol, against a block server of the test's own
on a real mosquitto: offers refused before anything is written, and a download that resumes
from its saved blocks after the agent stops mid-transfer."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from camfleet.edge import update
from camfleet.edge.ota import WINDOW
from camfleet.mosquitto import Mosquitto
from camfleet.proto import codec, signing, topics
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import command_pb2, ota_pb2
from tests.edge.bundles import RELEASE, payload
from tests.edge.conftest import agent_config

KEY = bytes(range(32))
BLOCK = 4096


class BlockServer:
    """Answers OtaBlockRequests for one bundle with blocks below ``limit``; records requests."""

    def __init__(self, broker: Mosquitto, device_id: str, bundle: bytes) -> None:
        self.device_id, self.bundle = device_id, bundle
        self.total = (len(bundle) + BLOCK - 1) // BLOCK
        self.limit = self.total
        self.requests: list[ota_pb2.OtaBlockRequest] = []
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_request
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topics.device_topic(device_id, Kind.OTA_REQUEST), 1)
        self.client.loop_start()

    def _on_request(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        req = ota_pb2.OtaBlockRequest.FromString(msg.payload)
        with self.cond:
            self.requests.append(req)
            self.cond.notify_all()
        for j in range(req.count):
            i = req.first_block + j
            if i >= self.limit or (req.wanted and not req.wanted[j // 8] & (1 << (j % 8))):
                continue
            data = self.bundle[i * BLOCK : (i + 1) * BLOCK]
            block = ota_pb2.OtaBlock(
                artifact_id=req.artifact_id,
                index=i,
                total_blocks=self.total,
                sha256=hashlib.sha256(data).digest(),
                data=data,
            )
            client.publish(
                topics.device_topic(self.device_id, Kind.OTA_BLOCK),
                block.SerializeToString(),
                qos=1,
            )

    def wait_for_request(self, first_block: int, timeout: float = 30) -> None:
        with self.cond:
            assert self.cond.wait_for(
                lambda: any(r.first_block == first_block for r in self.requests), timeout
            ), f"no request from block {first_block}: {[r.first_block for r in self.requests]}"

    def send_offer(self, offer: command_pb2.OtaOffer, command_id: str = "ota-1") -> None:
        cmd = command_pb2.Command(id=command_id, ota_offer=offer)
        self.client.publish(
            topics.device_topic(self.device_id, Kind.CMD),
            signing.sign(KEY, Kind.CMD, self.device_id, codec.encode(cmd)),
            qos=1,
        ).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def make_offer(bundle: bytes, version: str = "2.0.0") -> command_pb2.OtaOffer:
    sha, sig = update.sign(RELEASE, bundle)
    return command_pb2.OtaOffer(
        artifact_id="eb-test",
        version=version,
        size=len(bundle),
        sha256=sha,
        block_size=BLOCK,
        scheme=command_pb2.SIGNATURE_SCHEME_ED25519,
        signature=sig,
        device_hmac=hmac.new(KEY, sha, "sha256").digest(),
        platform="linux",
    )


@pytest.fixture
def bundle() -> bytes:
    return update.make_bundle("2.0.0", payload("2.0.0"))


@pytest.fixture
def server(mosquitto: Mosquitto, device_id: str, bundle: bytes) -> Iterator[BlockServer]:
    s = BlockServer(mosquitto, device_id, bundle)
    yield s
    s.close()


def config(tmp_path: Path, mosquitto: Mosquitto, device_id: str, **agent: object):  # type: ignore[no-untyped-def]
    return agent_config(
        tmp_path,
        mosquitto,
        device_id,
        device={"key": KEY.hex()},
        spool={"fsync": False},
        agent={"update_public_key": update.public_key_text(RELEASE), **agent},
    )


def test_a_download_resumes_from_its_saved_blocks_after_the_agent_stops(
    tmp_path, mosquitto, device_id, receiver_for, run_agent, server, bundle
) -> None:  # type: ignore[no-untyped-def]
    assert server.total > WINDOW
    # the "controller" stops answering after the first window (stopped, overloaded); at a window
    # boundary, so the agent asks for the next one at once instead of after its retry timer
    half = WINDOW
    server.limit = half
    cfg = config(tmp_path, mosquitto, device_id)
    rx = receiver_for(mosquitto, device_id, receipts=False)
    first = run_agent(cfg)
    rx.wait_for(lambda g: g.states, what="birth")
    server.send_offer(make_offer(bundle))
    server.wait_for_request(half)  # every block before it is in
    first.stop()
    state = cfg.agent.state_dir / "update" / "download"
    bits = (state / "blocks").read_bytes()
    assert sum(bin(b).count("1") for b in bits) == half

    server.limit = server.total
    asked_before = len(server.requests)
    second = run_agent(cfg)
    second.thread.join(60)  # run() returns to let the launcher start the installed version
    assert second.agent.reexec
    resumed = server.requests[asked_before]
    assert resumed.first_block == half  # asked only for what it lacked
    assert min(r.first_block for r in server.requests[asked_before:]) == half
    slots = update.Slots(cfg.agent.state_dir)
    assert slots.pending is not None and slots.pending["version"] == "2.0.0"
    assert slots.pending["artifact_id"] == "eb-test"
    assert not state.exists()  # the download is gone once installed
    acks = {a.command_id: a for a in rx.got.acks}
    assert acks["ota-1"].status == command_pb2.ACK_STATUS_DONE
    phases = [e.ota.phase for e in rx.got.events if e.type == "ota"]
    assert phases[-2:] == ["verifying", "rebooting"]


REFUSALS = [
    ({"platform": "esp32"}, "platform esp32 is not linux"),
    ({"scheme": command_pb2.SIGNATURE_SCHEME_HMAC_SHA256}, "SIGNATURE_SCHEME_HMAC_SHA256"),
    ({"scheme": 7}, "signature scheme 7 unsupported"),  # a scheme this build does not know
    ({"device_hmac": bytes(32)}, "bad device HMAC"),
    ({"signature": b"short"}, "Ed25519 signature 64"),
]


def test_offers_refused_before_anything_is_written(
    tmp_path, mosquitto, device_id, receiver_for, run_agent, server, bundle
) -> None:  # type: ignore[no-untyped-def]
    cfg = config(tmp_path, mosquitto, device_id)
    rx = receiver_for(mosquitto, device_id, receipts=False)
    run_agent(cfg)
    rx.wait_for(lambda g: g.states, what="birth")
    for n, (change, _) in enumerate(REFUSALS):
        offer = make_offer(bundle)
        for field, value in change.items():
            setattr(offer, field, value)
        server.send_offer(offer, f"ota-{n}")
    rx.wait_for(lambda g: len(g.acks) == len(REFUSALS), what="acks")
    acks = {a.command_id: a for a in rx.got.acks}
    for n, (_, why) in enumerate(REFUSALS):
        assert acks[f"ota-{n}"].status == command_pb2.ACK_STATUS_REJECTED
        assert why in acks[f"ota-{n}"].detail
    assert not server.requests
    assert not (cfg.agent.state_dir / "update" / "download").exists()

"""The rollout engine on SQLite and PostgreSQL: phases, skips, downgrade refusal, retries,
time-outs, manual gates and operator control, driven by the messages devices send."""

from __future__ import annotations

import hmac
from typing import Any

import pytest

from camfleet.controller import registry
from camfleet.controller.commands import Commands
from camfleet.controller.ingest.jobs import Job
from camfleet.controller.metrics import Metrics
from camfleet.controller.ota.artifacts import ArtifactStore, set_device_key
from camfleet.controller.ota.rollouts import (
    RolloutOptions,
    Rollouts,
    assign_phases,
    parse_duration,
    parse_phases,
    parse_rate,
    version_key,
)
from camfleet.errors import UserError
from camfleet.proto.topics import Kind
from camfleet.proto.v1 import command_pb2, state_pb2, telemetry_pb2
from tests.ota_helpers import release_key, signed_image

__all__ = ["release_key"]  # fixture


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def _engine(database: Any, release_key: Any, tmp_path: Any) -> tuple[Rollouts, Clock, list, str]:  # type: ignore[type-arg]
    clock = Clock()
    published: list[tuple[str, bytes]] = []
    commands = Commands(
        database, lambda t, p, **kw: published.append((t, p)), Metrics(), clock_ms=clock
    )
    store = ArtifactStore(database, tmp_path / "ota", release_key.public.read_bytes(), 0x1A0000)
    art = store.add(signed_image("2.0.0", 60_000, release_key, tmp_path))
    return Rollouts(database, store, commands, clock_ms=clock), clock, published, art["id"]


def _birth(db: Any, device: str, firmware: str, session: int = 1) -> None:
    st = state_pb2.DeviceState(
        presence=state_pb2.PRESENCE_ONLINE, session=session, firmware_version=firmware,
        platform="esp32",
    )  # fmt: skip
    with db.transaction() as tx:
        registry.apply_state(tx, device, st, 1)


def _ota(ro: Rollouts, device: str, art: str, phase: str, now: int, error: str = "") -> None:
    ev = telemetry_pb2.Event(type="ota", message=phase)
    ev.ota.artifact_id, ev.ota.phase, ev.ota.error = art, phase, error
    with ro.db.transaction() as tx:
        ro.apply_event(tx, Job(Kind.EVENT, device, ev, [], now))


def _update(ro: Rollouts, device: str, art: str, now: int) -> None:
    """What a node that updated fine sends: progress, a birth on 2.0.0, then succeeded."""
    for phase in ("accepted", "verifying", "rebooting"):
        _ota(ro, device, art, phase, now)
    _birth(ro.db, device, "2.0.0", session=2)
    _ota(ro, device, art, "succeeded", now)


def _statuses(ro: Rollouts, rid: str) -> dict[str, str]:
    return {d["device_id"]: d["status"] for d in ro.status(rid)["devices"]}


def test_phases_skips_and_gates(database, release_key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ro, clock, published, art = _engine(database, release_key, tmp_path)
    for i in range(6):
        _birth(database, f"n{i}", "1.0.0")
        set_device_key(database, f"n{i}", b"k" * 32)
    _birth(database, "n6", "2.0.0")  # already there
    _birth(database, "n7", "3.0.0")  # newer: no downgrade
    _birth(database, "n8", "0.9.0")  # not the version asked for
    opts = RolloutOptions(
        target="all", only_version=None, canary=1, phases=(0.5, 1.0), manual_gate=True
    )
    with pytest.raises(UserError, match="no devices"):
        ro.create(art, RolloutOptions(target="group:empty"))
    rid = ro.create(art, opts)["id"]
    st = ro.status(rid)
    skipped = {d["device_id"]: d["detail"] for d in st["devices"] if d["status"] == "skipped"}
    assert skipped == {"n6": "already on 2.0.0", "n7": "runs newer 3.0.0: downgrade refused"}
    assert _statuses(ro, rid)["n0"] == "offered" and len(published) == 1
    offer = command_pb2.Command.FromString(published[0][1]).ota_offer
    assert offer.rollout_id == rid and offer.version == "2.0.0" and len(offer.signature) == 32

    _update(ro, "n0", art, clock.ms)
    ro.tick()
    st = ro.status(rid)
    assert st["state"] == "gated" and "resume" in st["reason"]
    assert _statuses(ro, rid)["n1"] == "pending"  # the gate holds the next phase
    ro.set_state(rid, "resume")
    offered = {d for d, s in _statuses(ro, rid).items() if s == "offered"}
    assert offered == {"n1", "n2", "n3"}  # up to ceil(50% of the 7 eligible)
    ro.tick()
    assert len(published) == 4  # offered once each, however often the engine runs


def test_failures_retries_timeouts_and_pause(database, release_key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ro, clock, published, art = _engine(database, release_key, tmp_path)
    for i in range(4):
        _birth(database, f"n{i}", "1.0.0")
        set_device_key(database, f"n{i}", b"k" * 32)
    opts = RolloutOptions(
        target="devices:n0,n1,n2,n3",
        max_failure=0.3,
        min_sample=3,
        retries=1,
        device_timeout_s=60,
    )
    rid = ro.create(art, opts)["id"]
    assert set(_statuses(ro, rid).values()) == {"offered"}
    _ota(ro, "n0", art, "failed", clock.ms, "sha256 mismatch after read-back")
    assert _statuses(ro, rid)["n0"] == "pending"  # one retry
    ro.tick()
    assert _statuses(ro, rid)["n0"] == "offered"
    _ota(ro, "n0", art, "failed", clock.ms, "sha256 mismatch after read-back")
    assert _statuses(ro, rid)["n0"] == "failed"
    _update(ro, "n1", art, clock.ms)
    ro.tick()
    assert ro.status(rid)["state"] == "running"  # 1 failure of 2 finished: below min-sample
    clock.ms += 61_000  # n2 and n3 silent past their timeout: failed, offered again (retry)
    ro.tick()
    by = {d["device_id"]: d for d in ro.status(rid)["devices"]}
    assert [(by[n]["status"], by[n]["attempts"]) for n in ("n2", "n3")] == [("offered", 2)] * 2
    _ota(ro, "n2", art, "rolled_back", clock.ms, "new image failed its health check")
    ro.tick()
    st = ro.status(rid)
    assert _statuses(ro, rid)["n2"] == "rolled_back"  # no retry for an image that failed
    assert st["state"] == "paused"
    assert st["reason"] == "paused: 2 of 3 finished devices failed (67% > max failure 30%)"
    offers = {command_pb2.Command.FromString(p).id: t for t, p in published}
    per_device = sorted(t.split("/")[2] for t in offers.values())
    assert per_device == ["n0", "n0", "n1", "n2", "n2", "n3", "n3"]  # + one retry each
    ro.set_state(rid, "abort")
    assert ro.status(rid)["state"] == "aborted"
    with pytest.raises(UserError, match="cannot resume"):
        ro.set_state(rid, "resume")


def test_parsers() -> None:
    assert parse_phases("10%,50%,100%") == (0.1, 0.5, 1.0)
    for bad in ("50%,10%,100%", "10%,50%", "x"):
        with pytest.raises(UserError):
            parse_phases(bad)
    assert parse_duration("2h") == 7200 and parse_duration("90s") == 90
    assert parse_rate("20/min") == 20 and parse_rate("1/s") == 60
    assert version_key("1.10.0") > version_key("1.9.2") > version_key("1.9")
    assert assign_phases(["a", "b", "c", "d"], 1, (0.5, 1.0)) == {"a": 0, "b": 1, "c": 2, "d": 2}


def test_rate_limit_and_allowed_downgrade(database, release_key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ro, clock, _published, art = _engine(database, release_key, tmp_path)
    for i in range(5):
        _birth(database, f"n{i}", "3.0.0" if i == 0 else "1.0.0")
        set_device_key(database, f"n{i}", b"k" * 32)
    rid = ro.create(art, RolloutOptions(target="all", rate_per_min=2, allow_downgrade=True))["id"]
    offered = lambda: sorted(d for d, s in _statuses(ro, rid).items() if s == "offered")  # noqa: E731
    assert offered() == ["n0", "n1"]  # n0 runs 3.0.0: downgraded because it is allowed
    ro.tick()
    assert len(offered()) == 2  # the minute's budget is spent
    clock.ms += 60_001
    ro.tick()
    assert offered() == ["n0", "n1", "n2", "n3"]


def test_edge_bundles_go_to_edge_agents_only(database, release_key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An edge bundle is stored with its signature (blob on both databases) and offered with
    scheme ED25519 and the device's HMAC; an ESP32 image is never offered to an edge agent nor a
    bundle to an ESP32 node: both are skipped at create with the reason."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from camfleet.controller.ota.images import ImageRefused
    from camfleet.edge import update

    release = Ed25519PrivateKey.generate()
    ro, _clock, published, esp_art = _engine(database, release_key, tmp_path)
    ro.artifacts.edge_public_key = release.public_key()
    bundle = update.make_bundle("2.0.0", {"camfleet/__init__.py": b'__version__ = "2.0.0"\n'})
    sha, sig = update.sign(release, bundle)
    art = ro.artifacts.add(bundle, filename="b.tar.gz", signature=sig)
    assert (art["kind"], art["version"], art["platform"]) == ("edge-bundle", "2.0.0", "linux")
    assert art["signature"] == sig.hex()
    assert not ro.artifacts.add(bundle, signature=sig)["created"]  # deduplicated by SHA-256
    with pytest.raises(ImageRefused, match="bad signature"):
        ro.artifacts.add(bundle + b"x", signature=sig)
    with pytest.raises(ImageRefused, match="--signature"):
        ro.artifacts.add(bundle)
    esp_image = ro.artifacts.read(esp_art)[1]
    with pytest.raises(ImageRefused, match="carry their signature inside"):
        ro.artifacts.add(esp_image, signature=sig)

    _birth(database, "esp", "1.0.0")
    edge = state_pb2.DeviceState(
        presence=state_pb2.PRESENCE_ONLINE, session=1, firmware_version="1.0.0",
        platform="picamera2", capabilities=["jpeg", "self_update"],
    )  # fmt: skip
    with database.transaction() as tx:
        registry.apply_state(tx, "pi", edge, 1)
        del edge.capabilities[:]  # an agent without [agent] update_public_key
        registry.apply_state(tx, "pi-off", edge, 1)
    for device in ("esp", "pi", "pi-off"):
        set_device_key(database, device, (device.encode() * 16)[:32])

    rid = ro.create(art["id"], RolloutOptions(target="devices:esp,pi,pi-off"))["id"]
    details = {d["device_id"]: (d["status"], d["detail"]) for d in ro.status(rid)["devices"]}
    assert details == {
        "esp": ("skipped", "ESP32 node: edge-bundle artifacts are never offered to it"),
        "pi": ("offered", ""),
        "pi-off": ("skipped", "self-update is off ([agent] update_public_key)"),
    }
    (topic, payload) = published[-1]
    assert topic.endswith("/pi/cmd")
    offer = command_pb2.Command.FromString(payload).ota_offer
    assert offer.scheme == command_pb2.SIGNATURE_SCHEME_ED25519
    assert offer.sha256 == sha and offer.signature == sig and offer.platform == "linux"
    assert offer.device_hmac == hmac.new(b"pi" * 16, sha, "sha256").digest()  # its key

    rid = ro.create(esp_art, RolloutOptions(target="devices:esp,pi"))["id"]
    details = {d["device_id"]: (d["status"], d["detail"]) for d in ro.status(rid)["devices"]}
    assert details == {
        "esp": ("offered", ""),
        "pi": (
            "skipped",
            "edge agent (platform picamera2): esp32-app artifacts are never offered to it",
        ),
    }
    offer = command_pb2.Command.FromString(published[-1][1]).ota_offer
    assert offer.scheme == command_pb2.SIGNATURE_SCHEME_HMAC_SHA256 and not offer.device_hmac

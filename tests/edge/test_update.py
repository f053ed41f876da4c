"""Self-update bundles on the agent side: real Ed25519 keys, real tar.gz files, real slot dirs.

A good bundle installs beside the running version and runs once as pending; a bundle signed by
another key or altered after signing is refused with nothing written; a pending version that
does not confirm itself is rolled back at the next start with its version reported.
"""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camfleet.edge import update
from camfleet.edge.config import config_from_dict
from camfleet.errors import UserError

RELEASE = Ed25519PrivateKey.generate()
PUBLIC = update.load_public_key(update.public_key_text(RELEASE))


def bundle(version: str, key: Ed25519PrivateKey = RELEASE) -> tuple[bytes, bytes, bytes]:
    data = update.make_bundle(version, {"camfleet/__init__.py": f"V = {version!r}\n".encode()})
    digest, signature = update.sign(key, data)
    return data, digest, signature


def test_a_good_bundle_installs_beside_the_running_version_and_is_confirmed(tmp_path):
    slots = update.Slots(tmp_path)
    assert slots.boot() is None  # nothing installed: the package-installed version runs
    manifest, files = update.verify(*bundle("2.0.0"), PUBLIC)
    assert manifest.version == "2.0.0"
    target = slots.install(manifest, files)
    assert (target / "camfleet" / "__init__.py").read_text() == "V = '2.0.0'\n"
    assert update.Slots(tmp_path).boot() == target  # a new process (re-exec) tries it once
    slots = update.Slots(tmp_path)
    slots.confirm()
    assert update.Slots(tmp_path).boot() == target  # confirmed: it stays
    # The next update goes to the other slot, leaving the running one untouched.
    other = slots.install(*update.verify(*bundle("3.0.0"), PUBLIC))
    assert other != target and (target / "camfleet" / "__init__.py").exists()


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (lambda d, s, g: bundle("2.0.0", Ed25519PrivateKey.generate()), "bad signature"),
        (lambda d, s, g: (d[:-1] + bytes([d[-1] ^ 1]), s, g), "digest mismatch"),
        (lambda d, s, g: (d, s, g[:-1] + bytes([g[-1] ^ 1])), "bad signature"),
    ],
    ids=["other key", "altered bundle", "forged signature"],
)
def test_a_bundle_not_signed_by_the_release_key_is_refused_and_nothing_installed(
    tmp_path, tamper, why
):
    slots = update.Slots(tmp_path)
    with pytest.raises(update.UpdateError, match=why):
        slots.install(*update.verify(*tamper(*bundle("2.0.0")), PUBLIC))
    assert slots.pending is None
    assert sorted(p.name for p in slots.root.iterdir()) == []


def signed_tar(entries: dict[str, bytes]) -> tuple[bytes, bytes, bytes]:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    digest, signature = update.sign(RELEASE, out.getvalue())
    return out.getvalue(), digest, signature


MANIFEST = json.dumps({"name": "camfleet", "version": "2.0.0"}).encode()


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ({"manifest.json": MANIFEST, "payload/../../evil.py": b""}, "unsafe path"),
        ({"manifest.json": MANIFEST, "etc/passwd": b""}, "outside payload/"),
        ({"payload/camfleet/__init__.py": b""}, "no manifest.json"),
        ({"manifest.json": b"{", "payload/x.py": b""}, "not JSON"),
        ({"manifest.json": b'{"name": "other", "version": "1"}', "payload/x": b""}, "name"),
    ],
)
def test_a_signed_but_malformed_bundle_is_refused_with_the_reason(entries, why):
    with pytest.raises(update.UpdateError, match=why):
        update.verify(*signed_tar(entries), PUBLIC)


def test_a_pending_version_that_does_not_confirm_is_rolled_back_and_reported(tmp_path):
    slots = update.Slots(tmp_path)
    first = slots.install(*update.verify(*bundle("2.0.0"), PUBLIC))
    assert slots.boot() == first
    slots.confirm()
    second = update.Slots(tmp_path).install(*update.verify(*bundle("3.0.0"), PUBLIC))
    assert update.Slots(tmp_path).boot() == second  # tried once
    # That start died or failed its health check without confirming: the next start goes back.
    slots = update.Slots(tmp_path)
    assert slots.boot() == first
    assert slots.failed is not None and slots.failed["version"] == "3.0.0"
    assert update.Slots(tmp_path).boot() == first  # and stays there
    slots.mark_reported()
    assert update.Slots(tmp_path).failed["reported"] is True
    # A newer version that confirms clears the failure (no longer in the birth).
    slots.install(*update.verify(*bundle("3.0.1"), PUBLIC))
    assert slots.boot() is not None
    slots.confirm()
    assert update.Slots(tmp_path).failed is None


def test_a_failed_health_check_rolls_back_at_once(tmp_path):
    slots = update.Slots(tmp_path)
    slots.install(*update.verify(*bundle("2.0.0"), PUBLIC))
    assert slots.boot() is not None
    slots.reject("health check failed: camera error")
    again = update.Slots(tmp_path)
    assert again.boot() is None
    assert again.failed is not None
    assert again.failed["version"] == "2.0.0"
    assert again.failed["reason"] == "health check failed: camera error"


def test_config_refuses_a_malformed_public_key_in_one_line():
    base = {"device": {"id": "cam-1"}, "broker": {"url": "mqtt://localhost:1883"}}
    with pytest.raises(UserError, match=r"agent\.update_public_key: an Ed25519 public key is 32"):
        config_from_dict({**base, "agent": {"update_public_key": "AAAA"}})
    with pytest.raises(UserError, match=r"agent\.update_public_key: not base64"):
        config_from_dict({**base, "agent": {"update_public_key": "%%%"}})
    good = update.public_key_text(RELEASE)
    assert config_from_dict({**base, "agent": {"update_public_key": good}}).agent.update_public_key

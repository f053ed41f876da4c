"""OTA artifacts through the CLI and the HTTP API of a real controller: signed images accepted
and deduplicated, every kind of bad image refused at upload with one line saying why."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
from click.testing import CliRunner

from camfleet.cli import cli
from camfleet.controller.ota.artifacts import ArtifactStore
from camfleet.controller.ota.images import ImageRefused, ota_slot_size
from camfleet.esp32_node.tools.images import make_app_image
from camfleet.mosquitto import free_port
from tests.ota_helpers import other_key, release_key, s3_image, sign, signed_image

__all__ = ["other_key", "release_key"]  # fixtures

TOKEN = "test-token"


def run_cli(api: str, *args: str) -> tuple[int, str, str]:
    env = {"CAMFLEET_API": api, "CAMFLEET_TOKEN": TOKEN}
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_upload_list_remove_and_every_refusal(controllers, release_key, other_key, tmp_path):  # type: ignore[no-untyped-def]
    port = free_port()
    ctl = controllers(http=f"127.0.0.1:{port}", token=TOKEN, ota_public_key=str(release_key.public))
    api = f"http://127.0.0.1:{port}"
    good = tmp_path / "fw-2.0.0.bin"
    good.write_bytes(signed_image("2.0.0", 150_000, release_key, tmp_path))

    code, out, err = run_cli(api, "ota", "upload", str(good), "--json")
    assert code == 0, err
    assert '"created": true' in out and '"version": "2.0.0"' in out
    artifact_id = "fw-" + hashlib.sha256(good.read_bytes()).hexdigest()[:16]
    stored = ctl.data / "ota" / f"{hashlib.sha256(good.read_bytes()).hexdigest()}.bin"
    assert stored.read_bytes() == good.read_bytes()

    code, out, _ = run_cli(api, "ota", "upload", str(good))  # the same bytes again: deduplicated
    assert code == 0 and out.startswith(f"already stored as {artifact_id}")
    code, out, _ = run_cli(api, "ota", "ls")
    assert code == 0 and out.count(artifact_id) == 1 and "2.0.0" in out

    bad = {
        "unsigned": make_app_image("2.0.1", 150_000),
        "other-key": signed_image("2.0.2", 150_000, other_key, tmp_path),
        "s3": sign(s3_image("2.0.3"), release_key, tmp_path),
        "huge": signed_image("2.0.4", ota_slot_size(), release_key, tmp_path),
        "corrupt": _flip(signed_image("2.0.5", 150_000, release_key, tmp_path), 0x3000),
        "resigned-then-altered": _altered_signed(release_key, tmp_path),
        "not-an-image": b"hello" * 5000,
    }
    expected = {
        "unsigned": "unsigned image",
        "other-key": "signature not valid for the release public key",
        "s3": "image is for esp32s3, the fleet's nodes are esp32",
        "huge": "larger than the 1703936-byte OTA slot",
        "corrupt": "corrupted image",
        "resigned-then-altered": "signature block does not match the image",
        "not-an-image": "not an ESP32 app image",
    }
    for name, data in bad.items():
        path = tmp_path / f"{name}.bin"
        path.write_bytes(data)
        code, out, err = run_cli(api, "ota", "upload", str(path))
        assert code != 0, name
        assert expected[name] in err, (name, err)
        errors = [line for line in err.splitlines() if line.startswith("camfleet: error:")]
        assert len(errors) == 1 and "Traceback" not in err, err  # (the rest: progress bar)
    code, out, _ = run_cli(api, "ota", "ls", "--json")
    assert out.count('"id"') == 1  # nothing refused was stored

    code, out, err = run_cli(api, "ota", "upload", str(good), "--version", "9.9.9")
    assert code != 0 and "does not match the image's own version 2.0.0" in err

    code, out, _ = run_cli(api, "ota", "rm", artifact_id)
    assert code == 0 and not stored.exists()
    code, out, _ = run_cli(api, "ota", "ls")
    assert out.strip() == "no artifacts"


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :]


def _altered_signed(key, tmp_path: Path) -> bytes:  # type: ignore[no-untyped-def]
    """A signed image whose app part was changed and re-checksummed (esptool-valid), keeping the
    old signature sector: only the signature check can tell."""
    from esptool.bin_image import LoadFirmwareImage

    signed = signed_image("2.0.6", 150_000, key, tmp_path)
    app = make_app_image("2.0.6", 150_000, seed=99)  # same layout, other bytes
    assert len(app) <= len(signed) - 4096
    padded = app + b"\xff" * (len(signed) - 4096 - len(app))
    forged = padded + signed[-4096:]
    img = LoadFirmwareImage("esp32", forged)
    assert img.checksum == img.calculate_checksum() and img.stored_digest == img.calc_digest
    return forged


def test_keygen_and_sign_wrap_espsecure(tmp_path: Path) -> None:
    key = tmp_path / "release.pem"
    result = CliRunner().invoke(cli, ["ota", "keygen", str(key)])
    assert result.exit_code == 0, result.output
    pub = tmp_path / "release.pem.pub.pem"
    assert b"PUBLIC KEY" in pub.read_bytes() and b"PRIVATE KEY" in key.read_bytes()
    again = CliRunner().invoke(cli, ["ota", "keygen", str(key)])
    assert again.exit_code != 0 and "refusing to overwrite" in again.output

    image = tmp_path / "app.bin"
    image.write_bytes(make_app_image("3.1.0", 120_000))
    out = tmp_path / "app.signed.bin"
    result = CliRunner().invoke(
        cli, ["ota", "sign", str(image), "--keyfile", str(key), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    from camfleet.controller.ota.images import check_app_image

    info = check_app_image(out.read_bytes(), pub.read_bytes(), ota_slot_size())
    assert info.version == "3.1.0" and info.size % 4096 == 0


def test_artifact_registry_on_both_databases(database, release_key, tmp_path):  # type: ignore[no-untyped-def]
    store = ArtifactStore(database, tmp_path / "ota", release_key.public.read_bytes(), 0x1A0000)
    data = signed_image("4.0.0", 100_000, release_key, tmp_path)
    first = store.add(data, filename="a.bin")
    second = store.add(data, filename="b.bin")
    assert first["created"] and not second["created"] and first["id"] == second["id"]
    assert [a["version"] for a in store.list()] == ["4.0.0"]
    row, body = store.read(first["id"])
    assert body == data and row["size"] == len(data)
    store.remove(first["id"])
    assert store.list() == []
    try:
        store.add(b"\xe9" + bytes(9000))
    except ImageRefused as exc:
        assert "corrupted image" in str(exc) or "not an ESP32" in str(exc)
    else:
        raise AssertionError("a broken image was accepted")


def test_a_controller_without_the_release_key_refuses_every_image(
    controllers, release_key, tmp_path
):  # type: ignore[no-untyped-def]
    port = free_port()
    controllers(http=f"127.0.0.1:{port}", token=TOKEN)
    api = f"http://127.0.0.1:{port}"
    good = tmp_path / "fw.bin"
    good.write_bytes(signed_image("2.1.0", 60_000, release_key, tmp_path))
    code, _, err = run_cli(api, "ota", "upload", str(good))
    assert code != 0 and "no release public key configured" in err
    too_big = httpx.post(
        f"{api}/api/v1/ota/artifacts",
        content=b"\xe9" * (16 * 1024 * 1024 + 1),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60,
    )
    assert too_big.status_code == 413
    unauthorized = httpx.post(f"{api}/api/v1/ota/artifacts", content=good.read_bytes())
    assert unauthorized.status_code == 401


def test_edge_keygen_bundle_and_sign(tmp_path: Path) -> None:
    """The release side of edge bundles: a key (private PEM 600, public base64), a bundle of a
    directory or a wheel, its detached signature, all accepted by the agent's own verifier."""
    import zipfile

    from camfleet.edge import update

    runner = CliRunner()
    key = tmp_path / "edge-release.pem"
    result = runner.invoke(cli, ["ota", "edge-keygen", str(key)])
    assert result.exit_code == 0, result.output
    public = (tmp_path / "edge-release.pem.pub").read_text().strip()
    assert result.output.strip().endswith(f"public key: {public}")
    assert key.stat().st_mode & 0o777 == 0o600
    again = runner.invoke(cli, ["ota", "edge-keygen", str(key)])
    assert again.exit_code == 2 and "refusing to overwrite" in again.output

    tree = tmp_path / "unpacked"
    (tree / "camfleet").mkdir(parents=True)
    (tree / "camfleet" / "__init__.py").write_text('__version__ = "3.0.0"\n')
    wheel = tmp_path / "camfleet-3.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("camfleet/__init__.py", '__version__ = "3.0.0"\n')
        z.writestr("camfleet-3.0.0.dist-info/METADATA", "Name: camfleet\n")
    for source in (tree, wheel):
        out, sig = tmp_path / f"{source.name}.tar.gz", tmp_path / f"{source.name}.sig"
        made = runner.invoke(
            cli, ["ota", "edge-bundle", str(source), "--version", "3.0.0", "-o", str(out)]
        )
        assert made.exit_code == 0, made.output
        signed = runner.invoke(
            cli, ["ota", "edge-sign", str(out), "--keyfile", str(key), "-o", str(sig)]
        )
        assert signed.exit_code == 0, signed.output
        data = out.read_bytes()
        manifest, files = update.verify(
            data, hashlib.sha256(data).digest(), sig.read_bytes(), update.load_public_key(public)
        )
        assert manifest.version == "3.0.0"
        assert files["camfleet/__init__.py"] == b'__version__ = "3.0.0"\n'
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = runner.invoke(
        cli, ["ota", "edge-bundle", str(empty), "--version", "1", "-o", str(tmp_path / "x")]
    )
    assert refused.exit_code == 2
    assert refused.output.strip() == (
        f"camfleet: error: {empty}: no camfleet/__init__.py: a bundle carries the camfleet package"
    )

"""The node's ULP program: fetch its assembler, assemble ``firmware/ulp/pir.S``, write the binary.

The assembler is micropython-esp32-ulp, pinned to one PyPI sdist. pip cannot install it: its
sdists have neither setup.py nor pyproject.toml (pip stops at "does not appear to be a Python
project" before saving the file), so ``fetch`` takes the same file pip would, from the package
index pip is configured with (its PEP 691/503 page), checks the pinned SHA-256 and unpacks the
``esp32_ulp`` package into ``.venv/esp32-ulp`` (scripts/setup runs it). Release 1.2.0 imports
``uctypes``, so it runs under the MicroPython unix port of the dev dependencies, not CPython.

    python -m camfleet.esp32_node.tools.ulp_asm fetch   # scripts/setup
    python -m camfleet.esp32_node.tools.ulp_asm write   # scripts/ulp: rewrite ulp_pir.py

``tests/esp32/test_ulp.py`` assembles the source with it and compares with ``ulp_pir.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from camfleet.esp32_node.tools.hostdevice import MICROPYTHON, NODE_DIR

PROJECT = "micropython-esp32-ulp"
VERSION = "1.2.0"
SDIST = f"{PROJECT}-{VERSION}.tar.gz"
SDIST_SHA256 = "32754c92a01959a5a0742e0edf8d39e809dc4d317fc9c869b732b7f0d52d44de"
DEFAULT_INDEX = "https://pypi.org/simple"

ASSEMBLER_DIR = Path(sys.prefix) / "esp32-ulp"  # holds esp32_ulp/ (scripts/setup puts it there)
ULP_DIR = NODE_DIR / "firmware" / "ulp"
SOURCE = ULP_DIR / "pir.S"
MODULE = NODE_DIR / "ulp_pir.py"


class UlpError(Exception):
    """A step failed; the message is one line for the user."""


# --- fetch -------------------------------------------------------------------------------------


def _pip_config() -> dict[str, str]:
    """pip's own view of its settings, highest-priority scope first (env, site, user, global)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    found: dict[str, dict[str, str]] = {}
    for line in out.splitlines():
        m = re.match(r"^([^.]*)\.([\w-]+)='(.*)'$", line)
        if m:
            found.setdefault(m.group(2), {})[m.group(1)] = m.group(3)
    order = {":env:": 0, "site": 1, "user": 2, "global": 3}
    return {
        key: min(scopes.items(), key=lambda item: order.get(item[0], 4))[1]
        for key, scopes in found.items()
    }


def _indexes(config: dict[str, str]) -> list[str]:
    """The index URLs pip would look in, in its order: index-url, then each extra-index-url."""
    return [config.get("index-url", DEFAULT_INDEX), *config.get("extra-index-url", "").split()]


def _get(url: str, context: ssl.SSLContext, accept: str = "*/*") -> tuple[bytes, str]:
    if url.startswith("file:") and url.endswith("/"):
        url += "index.html"  # a file:// index is a tree of index.html pages
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=120, context=context) as resp:
        return resp.read(), resp.headers.get("Content-Type", "")


def _file_url(index: str, context: ssl.SSLContext) -> str:
    """The URL of SDIST on one index's project page (PEP 691 JSON or PEP 503 HTML)."""
    page = f"{index.rstrip('/')}/{PROJECT}/"
    accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
    body, ctype = _get(page, context, accept)
    if "json" in ctype:
        links = [(f["filename"], f["url"]) for f in json.loads(body)["files"]]
    else:
        hrefs = re.findall(r'href="([^"]+)"', body.decode("utf-8", "replace"))
        links = [(Path(urllib.parse.urlsplit(h).path).name, h) for h in hrefs]
    for name, url in links:
        if name == SDIST:
            return urllib.parse.urljoin(page, url.split("#")[0])
    raise UlpError(f"no {SDIST} on {page}")


def fetch(dest: Path = ASSEMBLER_DIR) -> str | None:
    """Put the pinned assembler's ``esp32_ulp`` package into ``dest`` and say from where; None
    (and no network) when it is there already."""
    stamp = dest / "SDIST_SHA256"
    if stamp.exists() and stamp.read_text().strip() == SDIST_SHA256:
        return None
    config = _pip_config()
    context = ssl.create_default_context(cafile=config.get("cert"))
    failures = []
    for index in _indexes(config):
        try:
            url = _file_url(index, context)
        except (UlpError, OSError, ValueError, KeyError) as e:  # not on this index: try the next
            failures.append(f"{index}: {e}")
            continue
        data, _ = _get(url, context)
        digest = hashlib.sha256(data).hexdigest()
        if digest != SDIST_SHA256:
            raise UlpError(f"{url}: sha256 {digest}, expected {SDIST_SHA256}: not unpacked")
        _unpack(data, dest)
        stamp.write_text(SDIST_SHA256 + "\n")
        return f"{PROJECT} {VERSION} from {url} unpacked into {dest}"
    raise UlpError(f"{SDIST} is on none of pip's indexes ({'; '.join(failures)})")


def _unpack(data: bytes, dest: Path) -> None:
    """The package's .py files (all the sdist holds besides PKG-INFO), next to ``dest``, moved."""
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".esp32-ulp-"))
    try:
        (tmp / "esp32_ulp").mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts  # micropython-esp32-ulp-1.2.0/esp32_ulp/x.py
                src = tar.extractfile(member) if member.isfile() else None
                if src and len(parts) == 3 and parts[1] == "esp32_ulp" and parts[2].endswith(".py"):
                    (tmp / "esp32_ulp" / parts[2]).write_bytes(src.read())
        if not (tmp / "esp32_ulp" / "__init__.py").exists():
            raise UlpError(f"{SDIST} holds no esp32_ulp package")
        tmp.chmod(0o755)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- assemble ----------------------------------------------------------------------------------


def assemble(source: Path = SOURCE, assembler: Path = ASSEMBLER_DIR) -> bytes:
    """``source`` assembled by micropython-esp32-ulp under the MicroPython unix port."""
    if not (assembler / "esp32_ulp" / "__init__.py").exists():
        raise UlpError(f"no esp32_ulp package in {assembler} (scripts/setup unpacks it)")
    # firmware/ulp/assemble.py is the script (its directory, first on the path, also gives the
    # btree stub); MICROPYPATH replaces the whole search path, so .frozen is named again
    proc = subprocess.run(
        [MICROPYTHON, str(ULP_DIR / "assemble.py"), str(source)],
        capture_output=True,
        text=True,
        env={**os.environ, "MICROPYPATH": f"{assembler}:.frozen"},
        timeout=120,
    )
    lines = proc.stdout.split()
    if proc.returncode != 0 or not lines:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise UlpError(f"assembling {source} failed: {detail[-1] if detail else proc.returncode}")
    return bytes.fromhex(lines[-1])


def write_module(binary: bytes, module: Path = MODULE) -> None:
    """Replace the generated block of ``ulp_pir.py`` with ``binary``."""
    hexdigits = binary.hex()
    rows = "\n".join(f'    "{hexdigits[i : i + 64]}"' for i in range(0, len(hexdigits), 64))
    block = f"# BEGIN BINARY\nBINARY_HEX = (\n{rows}\n)\n# END BINARY\n"
    text = module.read_text()
    new, n = re.subn(r"# BEGIN BINARY\n.*?# END BINARY\n", lambda _: block, text, flags=re.S)
    if n != 1:
        raise UlpError(f"{module} has no '# BEGIN BINARY' ... '# END BINARY' block")
    module.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ulp_asm", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help=f"unpack {PROJECT} {VERSION} into {ASSEMBLER_DIR}")
    write = sub.add_parser("write", help=f"assemble {SOURCE.name} into {MODULE.name}")
    write.add_argument(
        "--assembler",
        type=Path,
        default=ASSEMBLER_DIR,
        help="a directory holding esp32_ulp/ (e.g. a micropython-esp32-ulp checkout)",
    )
    args = parser.parse_args(argv)
    try:
        if args.cmd == "fetch":
            done = fetch()
            if done:
                print(done)
        else:
            binary = assemble(assembler=args.assembler)
            write_module(binary)
            print(f"wrote {MODULE} ({len(binary)} bytes)")
    except (UlpError, OSError) as e:
        print(f"ulp_asm: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Regenerate the committed Python modules from proto/camfleet/v1/*.proto.

The generator is pinned (grpcio-tools and mypy-protobuf in the ``dev`` extra) so that the output is
byte-for-byte reproducible and a test can prove the committed modules are fresh.

protoc names modules after the proto package (``camfleet.v1``); they are installed as
``camfleet.proto.v1``, so the imports between generated modules are rewritten accordingly.

Usage: ``python -m camfleet.proto.generate [OUT_DIR]`` (default: proto/v1 next to this file).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
SOURCES = sorted((PROTO_ROOT / "camfleet" / "v1").glob("*.proto"))
_IMPORT_FIXES = (
    (re.compile(r"^from camfleet\.v1 import ", re.M), "from camfleet.proto.v1 import "),
    (re.compile(r"^import camfleet\.v1\.", re.M), "import camfleet.proto.v1."),
    (re.compile(r"\bcamfleet\.v1\.(\w+_pb2)\b"), r"camfleet.proto.v1.\1"),
)


def run_protoc(out_dir: Path, with_stubs: bool = True) -> None:
    """Run the pinned protoc on every .proto into ``out_dir`` (flat, protoc's own layout)."""
    from grpc_tools import protoc  # dev dependency: imported only when generating

    include = Path(protoc.__file__).resolve().parent / "_proto"
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={out_dir}"]
    if with_stubs:
        plugin = shutil.which("protoc-gen-mypy") or str(
            Path(sys.executable).with_name("protoc-gen-mypy")
        )
        args += [f"--plugin=protoc-gen-mypy={plugin}", f"--mypy_out={out_dir}"]
    args += [str(p.relative_to(PROTO_ROOT)) for p in SOURCES]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed: see the messages above")


def generate(out_dir: Path) -> list[Path]:
    """Write the generated modules (with rewritten imports) into ``out_dir``; return them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        run_protoc(Path(tmp))
        for src in sorted((Path(tmp) / "camfleet" / "v1").iterdir()):
            text = src.read_text()
            for pattern, replacement in _IMPORT_FIXES:
                text = pattern.sub(replacement, text)
            dest = out_dir / src.name
            dest.write_text(text)
            written.append(dest)
    return written


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else PROTO_ROOT / "v1"
    for stale in out.glob("*_pb2.py*"):
        stale.unlink()
    for path in generate(out):
        print(f"wrote {path}")
    init = out / "__init__.py"
    if not init.exists():
        shutil.copyfile(PROTO_ROOT / "v1" / "__init__.py", init)


if __name__ == "__main__":
    main(sys.argv[1:])

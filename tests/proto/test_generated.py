"""The .proto files stand on their own, and the committed generated code is fresh."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from camfleet.proto import codec, generate, topics
from camfleet.proto.topics import Kind
from tests.proto.mqtt_helpers import Subscriber, publish
from tests.proto.samples import sample_frame

COMMITTED = Path(generate.__file__).resolve().parent / "v1"


def test_committed_generated_modules_are_fresh(tmp_path: Path) -> None:
    fresh = {p.name: p.read_text() for p in generate.generate(tmp_path)}
    committed = {p.name: p.read_text() for p in COMMITTED.glob("*_pb2.py*")}
    assert sorted(fresh) == sorted(committed), "a .proto was added or removed: run scripts/proto"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated modules {stale}: run scripts/proto and commit"


def test_protoc_output_alone_decodes_a_frame_taken_off_a_real_broker(
    tmp_path: Path,
    shared_mosquitto,  # type: ignore[no-untyped-def]
) -> None:
    # 1. Compile the .proto files with protoc into a directory of their own (protoc's own
    #    module names, camfleet.v1.*), not the committed camfleet.proto.v1 modules.
    out = tmp_path / "protoc_out"
    out.mkdir()
    generate.run_protoc(out, with_stubs=False)
    # 2. A frame crosses a real mosquitto; take its payload as a subscriber received it.
    frame = sample_frame(b"\xff\xd8 not really a jpeg \xff\xd9", metadata={"lux": "312"})
    topic = topics.device_topic("standalone-check", Kind.FRAME)
    sub = Subscriber(shared_mosquitto.host, shared_mosquitto.port, [topic])
    try:
        publish(shared_mosquitto.host, shared_mosquitto.port, [(topic, codec.encode(frame), False)])
        payload = sub.get().payload
    finally:
        sub.close()
    (tmp_path / "payload.bin").write_bytes(payload)
    # 3. A fresh interpreter that sees only protoc's output and the protobuf runtime decodes it.
    script = textwrap.dedent(
        """
        import hashlib, json, sys
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
        sys.path.insert(0, sys.argv[1])
        from camfleet.v1 import frame_pb2
        assert "camfleet.proto" not in sys.modules
        f = frame_pb2.Frame.FromString(open(sys.argv[2], "rb").read())
        print(json.dumps({
            "module": frame_pb2.__file__, "session": f.session, "seq": f.seq,
            "size": f.size, "sha_ok": hashlib.sha256(f.data).digest() == f.sha256,
            "lux": f.metadata["lux"], "width": f.settings.width,
        }))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(out), str(tmp_path / "payload.bin")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["module"].startswith(str(out))
    assert seen == {
        "module": seen["module"],
        "session": frame.session,
        "seq": frame.seq,
        "size": len(frame.data),
        "sha_ok": True,
        "lux": "312",
        "width": 640,
    }

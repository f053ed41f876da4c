"""Mutation testing of the durability core: plant one small bug at a time, run the tests that
should catch it, count the bugs they miss.

Why not mutmut or cosmic-ray: the tests that guard these files run the code in other processes
(the controller as a subprocess, the ESP32 node under the MicroPython unix port), which mutmut's
in-process trampolines do not reach, and both tools run far more mutants (and the whole test
command each) than 2 shared cores allow. This driver rewrites the source file itself, in a
scratch copy of the working tree, so every process sees the bug, and runs only the tests listed
for that file (``-x``: the first failure kills the mutant).

Mutants (generated from the AST, each one change in one function):
  compare   ``<``/``<=``, ``>``/``>=``, ``==``/``!=``, ``in``/``not in``, ``is``/``is not``
  bool      ``and``/``or``; ``not x`` -> ``x``
  number    an integer constant n -> n + 1 (0 -> 1, 1 -> 2, ...); ``True``/``False`` swapped
  arith     ``+``/``-`` (also ``+=``/``-=``)
  drop      a call statement (``os.fdatasync(fd)``, ``store.committed()``) becomes ``pass``
Not mutated: strings, docstrings, default argument values, and calls to the logger, the
rate-limited logger or the metrics (what they do is not durability). A killed mutant made a
listed test fail or time out. Equivalent mutants, reviewed one by one in
scripts/mutate-equivalent.toml, are not run and not counted (see ``Equivalent``).

Usage: scripts/mutate [--list] [--module NAME ...] [--only N ...] [--jobs N] [--summary FILES]
The latest score and every survivor are in docs/testing.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
#: The packages setup.py maps onto camfleet.*: linked inside the copy's camfleet/ so that the
#: copy imports itself, never the editable install of the working tree.
AREAS = ("proto", "controller", "edge", "esp32_node", "broker_config")


@dataclass(frozen=True)
class Target:
    """A file of the durability core, the functions to mutate (all when empty) and its tests."""

    path: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()


# Listed fastest first: ``-x`` stops at the first failure, so most mutants cost a second.
WRITER = "tests/controller/test_writer.py"
STORE = "tests/controller/test_frame_store.py"
CONTROLLER_INGEST = (
    "tests/controller/test_ingest_order.py",
    "tests/controller/test_ingest_durability.py",
    "tests/esp32/test_controller_sessions.py",
)
FRAME_LOG = ("tests/controller/test_frame_log_io.py", "tests/controller/test_frame_log.py")
TARGETS: dict[str, Target] = {
    "receipts": Target(
        "proto/receipts.py",
        ("tests/proto/test_receipts_split.py", "tests/proto/test_receipts.py"),
    ),
    "codec": Target(
        "proto/codec.py",
        ("tests/proto/test_codec_bounds.py", "tests/proto/test_codec.py"),
    ),
    "chunking": Target(
        "proto/chunking.py",
        ("tests/proto/test_chunking_bounds.py", "tests/proto/test_chunking.py"),
    ),
    "frame_log": Target(
        "controller/frames/log.py",
        (STORE, *FRAME_LOG, CONTROLLER_INGEST[0]),
        # everything but the constructor's constants (names, modes, the starting sentinels)
        (
            "FrameLog.append",
            "FrameLog.read",
            "FrameLog._pwrite_direct",
            "FrameLog._rotate",
            "FrameLog.delete",
            "FrameLog.close",
            "FrameLog.close_and_remove",
            "abandoned",
            "_segments",
            "read_segment",
            "read_at",
            "_pwritev_all",
        ),
    ),
    "frame_store": Target(
        "controller/frames/store.py",
        (STORE, "tests/controller/test_frame_files.py", *FRAME_LOG, *CONTROLLER_INGEST[:2]),
        # the durable path and the replay; not directory placement hints or orphan clean-up
        (
            "frame_key",
            "LocalFrameStore.put_batch",
            "LocalFrameStore.committed",
            "LocalFrameStore._abandon_staged",
            "LocalFrameStore._materialize_loop",
            "LocalFrameStore._read_records",
            "LocalFrameStore._forget",
            "LocalFrameStore._delete_finished_segments",
            "LocalFrameStore._write_files",
            "LocalFrameStore.recover",
            "LocalFrameStore.flush",
            "LocalFrameStore.close",
            "LocalFrameStore._write_one",
            "LocalFrameStore._sync",
            "LocalFrameStore.get",
            "LocalFrameStore.delete",
        ),
    ),
    "frames_index": Target(
        "controller/frames/index.py",
        (WRITER, *CONTROLLER_INGEST),
        # the dedup lookup, the replay's lookup and the insert (not the API's queries)
        ("digests", "sha256_of_keys", "insert"),
    ),
    # the writer also runs the registry's other jobs, whose after-commit actions notify the
    # command listeners: the command tests cover that part
    "writer": Target(
        "controller/ingest/writer.py",
        (
            WRITER,
            f"{STORE}::test_a_process_that_never_closes_its_store_or_writer_still_exits",
            *CONTROLLER_INGEST,
            "tests/controller/test_commands.py",
            # identity conflicts and the disk watermarks (issue 9) also go through the writer
            "tests/controller/test_identity.py::test_a_wiped_device_and_an_identity_reuse_lose_nothing",
            "tests/controller/test_storms.py::test_a_full_disk_refuses_frames_then_resumes_by_itself",
            # what runs after the PUBACKs: Home Assistant's latest JPEG (the after-ack hook)
            "tests/controller/test_integrations.py::test_latest_jpeg_and_discovery_after_store",
        ),
    ),
    "jobs": Target("controller/ingest/jobs.py", (WRITER, *CONTROLLER_INGEST)),
    "scheduler": Target(
        "controller/scheduler.py",
        ("tests/controller/test_scheduler_race.py", "tests/controller/test_scheduler.py"),
        ("Scheduler._fire", "Scheduler.set_enabled", "Scheduler.tick"),
    ),
    "edge_spool": Target(
        "edge/spool.py",
        (
            "tests/edge/test_spool_sync.py",
            "tests/edge/test_spool_edges.py",
            "tests/edge/test_spool.py",
            "tests/edge/test_sigkill.py",
        ),
    ),
    "edge_sender": Target(
        "edge/sender.py",
        ("tests/edge/test_sender.py", "tests/edge/test_outage.py"),
        # what is sent, when, and again (not the thread's start/stop plumbing)
        (
            "SpoolSender._run",
            "SpoolSender._send_connection",
            "SpoolSender._resend_check",
            "SpoolSender._publish",
            "SpoolSender.rewind",
        ),
    ),
    "esp32_spool": Target(
        "esp32_node/spool.py",
        (
            "tests/esp32/test_spool_flash.py",
            "tests/esp32/test_spool_receipts.py",
            "tests/esp32/test_durability.py",
            "tests/esp32/test_identity_receipts.py",  # incarnations (issue 9)
        ),
    ),
    "esp32_commands": Target(
        "esp32_node/commands.py",
        ("tests/esp32/test_command_repeat.py", "tests/esp32/test_cycle.py"),
        # decoding, de-duplication, expiry, acks, captures and config; the reboot, stay-awake and
        # OTA handlers are the OTA and wake tests' business (too slow to run per mutant)
        ("handle", "acked", "_capture", "_set_config", "_reannounce"),
    ),
}

_SWAP_CMP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_QUIET_CALLS = ("log", "logging", "metrics", "clock")  # receivers whose calls are not mutated
_QUIET_METHODS = ("_ratelog",)  # a rate-limited logger: ``self._ratelog(...)``


@dataclass(frozen=True)
class Mutant:
    module: str
    number: int
    line: int
    function: str
    kind: str
    before: str
    after: str
    start: tuple[int, int]
    end: tuple[int, int]


def _receiver(call: ast.Call) -> str:
    f = call.func
    while isinstance(f, ast.Attribute):
        if isinstance(f.value, ast.Name):
            return f.value.id
        if isinstance(f.value, ast.Attribute) and f.value.attr in _QUIET_CALLS:
            return f.value.attr
        f = f.value
    return f.id if isinstance(f, ast.Name) else ""


def _quiet(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    if isinstance(node.func, ast.Attribute) and node.func.attr in _QUIET_METHODS:
        return True
    return _receiver(node) in _QUIET_CALLS


class _Finder(ast.NodeVisitor):
    """Collect (node, replacement) pairs inside the wanted functions."""

    def __init__(self, functions: tuple[str, ...]) -> None:
        self.functions = functions
        self.stack: list[str] = []
        self.found: list[tuple[str, str, ast.AST, ast.AST | None]] = []
        self.skip: set[int] = set()

    def _scope(self) -> str:
        return ".".join(self.stack)

    def _wanted(self) -> bool:
        if not self.stack:
            return False
        name = self._scope()
        return not self.functions or any(
            name == f or name.startswith(f + ".") for f in self.functions
        )

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stack.append(node.name)
        for stmt in node.body:
            self.visit(stmt)
        self.stack.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                for sub in ast.walk(default):
                    self.skip.add(id(sub))
        self.stack.append(node.name)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        for stmt in body:
            self.visit(stmt)
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def _add(self, kind: str, node: ast.AST, new: ast.AST | None) -> None:
        if self._wanted() and id(node) not in self.skip:
            self.found.append((self._scope(), kind, node, new))

    def visit_Call(self, node: ast.Call) -> None:
        if _quiet(node):
            return  # nothing inside a log or metrics call is mutated
        self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Call) and not _quiet(node.value):
            self._add("drop", node, ast.Pass())
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        for i, op in enumerate(node.ops):
            swap = _SWAP_CMP.get(type(op))
            if swap is not None:
                new = ast.Compare(
                    left=node.left,
                    ops=[*node.ops[:i], swap(), *node.ops[i + 1 :]],
                    comparators=node.comparators,
                )
                self._add("compare", node, new)
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self._add("bool", node, ast.BoolOp(op=other, values=node.values))
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            self._add("bool", node, node.operand)
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Add | ast.Sub) and not _is_str(node):
            op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
            self._add("arith", node, ast.BinOp(left=node.left, op=op, right=node.right))
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.op, ast.Add | ast.Sub) and not _is_str(node.value):
            op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
            self._add("arith", node, ast.AugAssign(target=node.target, op=op, value=node.value))
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, bool):
            self._add("number", node, ast.Constant(not node.value))
        elif isinstance(node.value, int):
            self._add("number", node, ast.Constant(node.value + 1))


def _is_str(node: ast.AST) -> bool:
    # string building ("%s" % x, "a" + b) is not arithmetic
    return any(isinstance(n, ast.Constant) and isinstance(n.value, str) for n in ast.walk(node))


def mutants(module: str, target: Target, root: Path = REPO) -> list[Mutant]:
    source = (root / target.path).read_text()
    tree = ast.parse(source)
    finder = _Finder(target.functions)
    finder.visit(tree)
    lines = source.splitlines()
    out: list[Mutant] = []
    for scope, kind, node, new in finder.found:
        assert new is not None
        start = (node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = (node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        before = _segment(lines, start, end)
        # an expression goes in brackets so that it binds as the original did
        after = f"({ast.unparse(new)})" if isinstance(new, ast.expr) else ast.unparse(new)
        out.append(Mutant(module, len(out) + 1, start[0], scope, kind, before, after, start, end))
    return out


def _segment(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    if start[0] == end[0]:
        return lines[start[0] - 1][start[1] : end[1]]
    parts = [lines[start[0] - 1][start[1] :], *lines[start[0] : end[0] - 1]]
    return "\n".join([*parts, lines[end[0] - 1][: end[1]]])


def apply(source: str, m: Mutant) -> str:
    """The source with the mutant's span replaced (one line; multi-line spans sit in brackets)."""
    lines = source.splitlines(keepends=True)
    (l1, c1), (l2, c2) = m.start, m.end
    head = lines[l1 - 1][:c1]
    tail = lines[l2 - 1][c2:]
    return "".join([*lines[: l1 - 1], head + m.after + tail, *lines[l2:]])


# --- the scratch copy --------------------------------------------------------------------------


def make_copy(dest: Path) -> None:
    """A copy of the working tree (tracked and new files) that imports itself as camfleet.*."""
    if dest.exists():
        shutil.rmtree(dest)
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in files:
        if not name:
            continue
        rel = name.decode()
        src = REPO / rel
        if not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    for area in AREAS:
        os.symlink(dest / area, dest / "camfleet" / area)


#: Set when the run is stopped (Ctrl-C, SIGTERM): no new test run starts.
_STOPPING = threading.Event()


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float]:
    """'pass', 'fail' or 'timeout', and the seconds it took ('stopped' once stopping)."""
    if _STOPPING.is_set():
        return "stopped", 0.0
    marker = f"{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
    env = dict(
        os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", CAMFLEET_MUTANT_RUN=marker
    )
    started = time.monotonic()
    cmd = [str(PYTHON), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    # its own process group: a timeout or a stopped run ends the tests' brokers and controllers
    log = copy.parent / f"{copy.name}-last-run.log"  # the last run's output, for a failed baseline
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=copy, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - started
    finally:
        _end_group(proc)
        _end_marked(marker)  # what the tests started in sessions of their own (brokers)
    if _STOPPING.is_set():
        return "stopped", 0.0
    return ("pass" if code == 0 else "fail"), time.monotonic() - started


def _end_marked(marker: str) -> None:
    """Kill every process whose environment carries this run's marker (a test killed by the
    timeout leaves its mosquitto running: it starts in a session of its own). A marker ending
    in "-" matches every run of this driver process (used when it is stopped)."""
    needle = f"CAMFLEET_MUTANT_RUN={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            if any(v == needle or (marker.endswith("-") and v.startswith(needle)) for v in env):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def check_copy_imports_itself(copy: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(copy))
    out = subprocess.run(
        [str(PYTHON), "-c", "import camfleet.proto.codec as c; print(c.__file__)"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(copy.resolve()):
        raise SystemExit(f"the copy imports {out}, not its own files")


# --- equivalent mutants --------------------------------------------------------------------


@dataclass(frozen=True)
class Equivalent:
    """A reviewed mutant that no input can tell from the original (scripts/mutate-equivalent.toml).

    Matched on the module, the function, the kind, the change, the whole text of the source
    line it starts on and of the line above it (stripped, so that two identical lines in one
    function are told apart) and its column: an edit of those lines makes the entry stale
    (reported), and the mutant is run again until someone reviews it. Line numbers are not
    matched: an edit elsewhere in the file does not invalidate a review."""

    module: str
    function: str
    kind: str
    previous: str
    line: str
    column: int
    change: str
    why: str

    def matches(self, m: Mutant, source_lines: list[str]) -> bool:
        text = source_lines[m.line - 1]
        above = source_lines[m.line - 2] if m.line >= 2 else ""
        return (
            self.module == m.module
            and self.function == m.function
            and self.kind == m.kind
            and self.change == f"{m.before} -> {m.after}"
            and self.line == text.strip()
            and self.previous == above.strip()
            and self.column == m.start[1] - (len(text) - len(text.lstrip()))
        )


EQUIVALENT_FILE = REPO / "scripts" / "mutate-equivalent.toml"


def load_equivalent(path: Path = EQUIVALENT_FILE) -> list[Equivalent]:
    if not path.exists():
        return []
    with path.open("rb") as f:
        data = tomllib.load(f)
    out = []
    for entry in data.get("equivalent", []):
        if not str(entry.get("why", "")).strip():
            raise SystemExit(f"{path}: an entry without a reason: {entry}")
        out.append(Equivalent(**entry))
    return out


def classify(
    module: str, found: list[Mutant], source: str, equivalent: list[Equivalent]
) -> tuple[list[Mutant], dict[int, Equivalent]]:
    """(mutants to run, {number: its equivalence entry} for the rest)."""
    lines = source.splitlines()
    skipped: dict[int, Equivalent] = {}
    for e in equivalent:
        if e.module != module:
            continue
        hits = [m for m in found if e.matches(m, lines)]
        if len(hits) > 1:
            raise SystemExit(
                f"{EQUIVALENT_FILE.name}: an entry matches {len(hits)} mutants of {module} "
                f"(#{', #'.join(str(m.number) for m in hits)}): make it match one"
            )
        for m in hits:
            skipped[m.number] = e
    return [m for m in found if m.number not in skipped], skipped


def stale_entries(equivalent: list[Equivalent], root: Path = REPO) -> list[Equivalent]:
    """Entries that match no mutant of today's source (the line changed, or the scope)."""
    out: list[Equivalent] = []
    cache: dict[str, tuple[list[Mutant], list[str]]] = {}
    for e in equivalent:
        if e.module not in TARGETS:
            out.append(e)
            continue
        if e.module not in cache:
            target = TARGETS[e.module]
            cache[e.module] = (
                mutants(e.module, target, root),
                (root / target.path).read_text().splitlines(),
            )
        found, lines = cache[e.module]
        if not any(e.matches(m, lines) for m in found):
            out.append(e)
    return out


def score_line(name: str, killed: int, ran: int, equivalent: int) -> str:
    generated = ran + equivalent
    return (
        f"  {name:15} {killed:4} / {ran:<4} {100 * killed / max(ran, 1):5.1f} %   "
        f"({equivalent} equivalent not run; raw {killed} / {generated} = "
        f"{100 * killed / max(generated, 1):.1f} %)"
    )


def summary(files: list[Path]) -> int:
    """Later files override earlier ones mutant by mutant (a re-run of survivors with --only)."""
    latest: dict[tuple[str, int], dict[str, object]] = {}
    for path in files:
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                latest[(str(r["module"]), int(r["number"]))] = r
    # Every row is checked against today's source: a row of another version of the file (its
    # mutant no longer there, same number and change) stops the summary, and a mutant that
    # the equivalence list covers today counts as equivalent whatever the run said.
    reviewed = load_equivalent()
    current: dict[str, tuple[dict[int, Mutant], dict[int, Equivalent]]] = {}
    by_module: dict[str, list[dict[str, object]]] = {}
    for (module, number), r in sorted(latest.items()):
        if module not in current:
            found = mutants(module, TARGETS[module])
            source = (REPO / TARGETS[module].path).read_text()
            current[module] = (
                {m.number: m for m in found},
                classify(module, found, source, reviewed)[1],
            )
        today, skipped = current[module]
        m = today.get(number)
        if m is None or (m.line, m.before, m.after) != (r["line"], r["before"], r["after"]):
            raise SystemExit(f"{module} #{number}: the results are of another version of the file")
        if number in skipped:
            r = {**r, "outcome": "equivalent"}
        elif r["outcome"] == "equivalent":
            continue  # not on the list any more: it has to be run
        by_module.setdefault(module, []).append(r)
    counted = {(module, int(str(r["number"]))) for module, rows in by_module.items() for r in rows}
    missing = [
        f"{module} #{n}"
        for module, (today, _) in current.items()
        for n in today
        if (module, n) not in counted
    ]
    if missing:
        print(f"not run: {len(missing)} mutants ({', '.join(missing[:20])}...)\n")
    print("| module | file | killed | run | equivalent (not run) | score |")
    print("|---|---|---:|---:|---:|---:|")
    k_all = n_all = e_all = 0
    for module in sorted(by_module):
        rows = by_module[module]
        equivalent = sum(r["outcome"] == "equivalent" for r in rows)
        ran = len(rows) - equivalent
        killed = sum(r["outcome"] in ("fail", "timeout") for r in rows)
        k_all, n_all, e_all = k_all + killed, n_all + ran, e_all + equivalent
        print(
            f"| {module} | `{TARGETS[module].path}` | {killed} | {ran} | {equivalent} | "
            f"{100 * killed / max(ran, 1):.1f} % |"
        )
    print(
        f"| **total** | | **{k_all}** | **{n_all}** | **{e_all}** | "
        f"**{100 * k_all / max(n_all, 1):.1f} %** |"
    )
    print()
    for module in sorted(by_module):
        for r in by_module[module]:
            if r["outcome"] == "pass":
                print(
                    f"- {module} #{r['number']} `{TARGETS[module].path}:{r['line']}` "
                    f"{r['function']} [{r['kind']}] `{r['before']}` -> `{r['after']}`"
                )
    return 0


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the finally that puts the original file back


def _defined(body: list[ast.stmt], prefix: str, into: set[str]) -> None:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            into.add(prefix + node.name)
            _defined(node.body, prefix + node.name + ".", into)


def check_scope() -> None:
    """A function named in a target's scope that the file no longer has is a scope gone stale."""
    for name, target in TARGETS.items():
        tree = ast.parse((REPO / target.path).read_text())
        defined: set[str] = set()
        _defined(tree.body, "", defined)
        missing = [f for f in target.functions if f not in defined]
        if missing:
            raise SystemExit(f"{name}: {target.path} has no {', '.join(missing)} (fix TARGETS)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", action="append", choices=sorted(TARGETS), help="repeatable")
    ap.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    ap.add_argument("--only", type=int, action="append", help="mutant numbers (with --module)")
    ap.add_argument("--timeout-factor", type=float, default=3.0)
    ap.add_argument(
        "--jobs", type=int, default=1, help="mutants run at once, each in a copy of its own"
    )
    ap.add_argument(
        "--sample",
        type=int,
        default=0,
        help="at most this many mutants per module, evenly spread over the file (0: all)",
    )
    ap.add_argument(
        "--copy",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / ("camfleet-mutate-" + REPO.name),
    )
    ap.add_argument("--results", type=Path, default=None, help="JSON lines written here")
    ap.add_argument(
        "--summary",
        type=Path,
        nargs="+",
        help="print the table and survivors of earlier --results files (a module's last file wins)",
    )
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    if args.summary:
        return summary(args.summary)
    check_scope()
    equivalent = load_equivalent()
    stale = stale_entries(equivalent)
    for e in stale:
        print(
            f"stale entry in {EQUIVALENT_FILE.name} (no such mutant any more; review it): "
            f"{e.module} {e.function} [{e.kind}] {e.change!r} on {e.line!r}",
            flush=True,
        )
    modules = args.module or sorted(TARGETS)
    if args.list:
        for name in modules:
            target = TARGETS[name]
            found = mutants(name, target)
            _, skipped = classify(name, found, (REPO / target.path).read_text(), equivalent)
            for m in found:
                mark = " (equivalent: not run)" if m.number in skipped else ""
                print(
                    f"{name} #{m.number} {target.path}:{m.line} {m.function} [{m.kind}] "
                    f"{m.before!r} -> {m.after!r}{mark}"
                )
        return 0
    copies = [args.copy] + [
        args.copy.with_name(f"{args.copy.name}-{i}") for i in range(1, max(args.jobs, 1))
    ]
    for copy in copies:
        make_copy(copy)
        check_copy_imports_itself(copy)
    results = args.results or args.copy.parent / f"{args.copy.name}-results.jsonl"
    totals: dict[str, list[int]] = {}
    survivors: list[Mutant] = []
    started = time.monotonic()
    pool = ThreadPoolExecutor(len(copies))
    try:
        run_modules(args, modules, copies, equivalent, results, totals, survivors, pool)
    except KeyboardInterrupt:
        _STOPPING.set()
        pool.shutdown(wait=False, cancel_futures=True)
        _end_marked(f"{os.getpid()}-")  # the runs in flight, and what their tests started
        print("\nstopped: the results so far are in", results, flush=True)
        return 130
    pool.shutdown()
    report(totals, survivors, stale, started)
    return 0


def run_modules(
    args: argparse.Namespace,
    modules: list[str],
    copies: list[Path],
    equivalent: list[Equivalent],
    results: Path,
    totals: dict[str, list[int]],
    survivors: list[Mutant],
    pool: ThreadPoolExecutor,
) -> None:
    free: queue.Queue[Path] = queue.Queue()
    for copy in copies:
        free.put(copy)
    lock = threading.Lock()
    with results.open("a") as out:
        for name in modules:
            target = TARGETS[name]
            original = (REPO / target.path).read_text()
            status, base = run_tests(copies[0], target.tests, 1800)
            if status != "pass":
                print(f"{name}: its tests fail without any mutant ({status}); skipped", flush=True)
                log = copies[0].parent / f"{copies[0].name}-last-run.log"
                print("\n".join(log.read_text(errors="replace").splitlines()[-15:]), flush=True)
                continue
            timeout = max(30.0, base * args.timeout_factor)
            found = mutants(name, target, copies[0])
            total = len(found)
            if args.only:
                found = [m for m in found if m.number in args.only]
            elif args.sample and total > args.sample:
                found = [found[i * total // args.sample] for i in range(args.sample)]
            found, skipped = classify(name, found, original, equivalent)
            print(
                f"{name}: {len(found)} of {total} mutants to run ({len(skipped)} equivalent), "
                f"tests take {base:.1f} s",
                flush=True,
            )
            date = time.strftime("%Y-%m-%d")
            for number in sorted(skipped):
                m = next(x for x in mutants(name, target, copies[0]) if x.number == number)
                row = {**asdict(m), "outcome": "equivalent", "seconds": 0.0, "date": date}
                out.write(json.dumps(row) + "\n")

            def one(
                m: Mutant,
                target: Target = target,
                original: str = original,
                timeout: float = timeout,
                date: str = date,
            ) -> str:
                copy = free.get()
                path = copy / target.path
                try:
                    path.write_text(apply(original, m))
                    try:
                        compile(path.read_text(), str(path), "exec")
                        outcome, took = run_tests(copy, target.tests, timeout)
                    except SyntaxError:
                        outcome, took = "invalid", 0.0
                finally:
                    path.write_text(original)
                    free.put(copy)
                if outcome in ("invalid", "stopped"):
                    return outcome
                with lock:
                    row = {**asdict(m), "outcome": outcome, "seconds": round(took, 1), "date": date}
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    dead = outcome != "pass"
                    print(
                        f"  #{m.number} {'killed' if dead else 'SURVIVED'} ({outcome}, "
                        f"{took:.1f} s) {target.path}:{m.line} [{m.kind}] "
                        f"{m.before!r} -> {m.after!r}",
                        flush=True,
                    )
                return outcome

            outcomes = list(pool.map(one, found))
            ran = [
                (m, o)
                for m, o in zip(found, outcomes, strict=True)
                if o not in ("invalid", "stopped")
            ]
            survivors += [m for m, o in ran if o == "pass"]
            killed = sum(o != "pass" for _, o in ran)
            totals[name] = [killed, len(ran), len(skipped)]


def report(
    totals: dict[str, list[int]], survivors: list[Mutant], stale: list[Equivalent], started: float
) -> None:
    print(f"\nmodule            killed / run     ({time.monotonic() - started:.0f} s)")
    for name, counts in totals.items():
        print(score_line(name, *counts))
    k = sum(v[0] for v in totals.values())
    n = sum(v[1] for v in totals.values())
    eq = sum(v[2] for v in totals.values())
    print(score_line("total", k, n, eq))
    if survivors:
        print("\nsurvivors:")
        for m in survivors:
            print(
                f"  {m.module} #{m.number} {TARGETS[m.module].path}:{m.line} {m.function} "
                f"[{m.kind}] {m.before!r} -> {m.after!r}"
            )
    if stale:
        print(f"\n{len(stale)} stale entries in {EQUIVALENT_FILE.name}: see the top of this output")


if __name__ == "__main__":
    sys.exit(main())

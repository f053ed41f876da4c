"""A throwaway PostgreSQL server for the storage-portability tests (the Debian package's
binaries, run as the `postgres` user when the tests run as root, trust auth, fsync off)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from camfleet.mosquitto import free_port


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a URL to a fresh server (database `postgres`, superuser `camfleet`)."""
    # Debian/Ubuntu keep the server binaries per major version, off PATH.
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    binary = installed[-1] if installed else shutil.which("initdb")
    if binary is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    bindir = os.path.dirname(binary)
    base = tempfile.mkdtemp(prefix="camfleet-pg-")
    os.chmod(base, 0o755)
    data = os.path.join(base, "data")
    os.mkdir(data)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        os.chown(data, pw.pw_uid, pw.pw_gid)
    port = free_port()
    run = lambda *a: subprocess.run(  # noqa: E731
        _as_postgres(list(a)), check=True, capture_output=True, text=True
    )
    run(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "camfleet", "--no-sync")
    run(
        f"{bindir}/pg_ctl",
        "-D",
        data,
        "-w",
        "-l",
        os.path.join(base, "log"),
        "-o",
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )
    try:
        yield f"postgresql://camfleet@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name

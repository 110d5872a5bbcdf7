"""A throwaway PostgreSQL server for the store tests: initdb + pg_ctl on a temporary folder,
listening on 127.0.0.1 at a free port, trust authentication, removed when the tests end.

Uses Debian's ``postgresql`` binaries (``apt-get install postgresql``; ``make test`` and
``.ci/run`` install it). As root, the server runs as the ``postgres`` user (PostgreSQL refuses
to run as root). ``server()`` returns None when the binaries are absent.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

_SERVER: PostgresServer | None | bool = False  # False: not tried yet


def bin_dir() -> Path | None:
    """Folder holding initdb / pg_ctl / postgres, or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One running cluster; ``new_database()`` gives each test its own empty database."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="saliency-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "saliency",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()} {log[-2000:]}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://saliency@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=saliency dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except Exception:  # best effort at exit
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def server() -> PostgresServer | None:
    """The shared test server, started on first call; None if PostgreSQL is not installed."""
    global _SERVER
    if _SERVER is False:
        bindir = bin_dir()
        if bindir is None:
            _SERVER = None
        else:
            _SERVER = PostgresServer(bindir)
            atexit.register(_SERVER.stop)
    return _SERVER


def review_url(kind: str, folder: Path) -> str:
    """A fresh, empty review database: ``kind`` "sqlite" (a file in ``folder``) or "postgresql"
    (a new database on this module's server; the calling test is skipped without PostgreSQL)."""
    if kind == "sqlite":
        return "sqlite:///" + str(Path(folder) / "reviews.sqlite")
    found = server()
    if found is None:
        import pytest

        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); make test installs it")
    return found.new_database()

"""A one-node Ray cluster for the tests that run on Ray (fixtures registered in conftest.py).

It is started with the ``ray`` command of this virtualenv (``ray start --head --block`` on
127.0.0.1, 2 CPUs, a 200 MB object store, in a session of its own). Teardown stops exactly that
cluster: the ``ray start`` process, then any process left in its session. ``ray stop --force``
is not used: it would stop every Ray process of the user on this machine, other people's too.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"
# every Ray process of the test on 127.0.0.1 (Ray would otherwise pick the machine's own address),
# no usage reports, no token from ~/.ray/auth_token (a test cluster is private to this machine),
# and a SIGTERM stops the node at once instead of draining for 30 s
ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_of(pid: int) -> int | None:
    """The session id of a process (field 6 of /proc/PID/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[3])


def _in_session(sid: int) -> list[int]:
    return [
        int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and session_of(int(p.name)) == sid
    ]


@pytest.fixture(scope="module")
def cluster():
    """A Ray head node with 2 CPUs on 127.0.0.1; yields (address, its session id)."""
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    log = open(os.path.join(temp, "ray_start.log"), "w")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in ENV.items():
            mp.setenv(k, v)
        head = subprocess.Popen(
            [
                str(RAY),
                "start",
                "--head",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(port),
                "--num-cpus",
                "2",
                "--object-store-memory",
                "200000000",
                "--include-dashboard",
                "false",
                "--disable-usage-stats",
                "--temp-dir",
                temp,
                "--block",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 120
            while "Ray runtime started" not in Path(log.name).read_text():
                assert head.poll() is None, Path(log.name).read_text()[-3000:]
                assert time.monotonic() < deadline, "ray start did not finish in 120 s"
                time.sleep(0.5)
            yield f"127.0.0.1:{port}", head.pid
        finally:
            import ray

            if ray.is_initialized():
                ray.shutdown()
            head.send_signal(signal.SIGTERM)
            try:
                head.wait(timeout=30)
            except subprocess.TimeoutExpired:
                head.kill()
            for pid in _in_session(head.pid):  # only what this cluster started
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            log.close()
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield 1
    torch.set_num_threads(threads)

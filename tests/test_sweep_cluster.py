"""``drdfl sweep --address`` against a real Ray cluster, as the README says to reach one: a
separate ``ray start --head`` on the loopback with token authentication, joined through
Ray Client (``ray://``) by a driver that has the token; a unit that fails, one retried and
one blocked. The cluster's processes are stopped by their ids, and none is left.

Failures are injected by replacing the task function the executor ships, in the driver's
own ``__main__`` (so that it travels to the cluster's workers by value)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import attempts, group_members

RAY = Path(sys.executable).with_name("ray")
PORTS = (
    "port",
    "object-manager-port",
    "node-manager-port",
    "ray-client-server-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
)
SETS = [
    "seeds=0",
    "methods=mse,dfl,wdro",
    "train.epochs=1",
    "data.synthetic_days=0.3",
    "evaluation.skyline=false",
    "evaluation.corruptions=false",
    "evaluation.online=false",
]


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on the loopback now."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A one-node Ray cluster with token authentication, its own HOME (where its token
    lives), temporary directory and free ports; stopped, and checked gone, afterwards."""
    root = tmp_path_factory.mktemp("cluster")
    env = dict(os.environ, HOME=str(root), RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0")
    subprocess.run([str(RAY), "get-auth-token", "--generate"], env=env, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    token = root / ".ray" / "auth_token"
    ports = dict(zip(PORTS, _free_ports(len(PORTS)), strict=True))
    args = [
        str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2",
        "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={root / 'ray'}",
        *(f"--{name}={port}" for name, port in ports.items()),
    ]  # fmt: skip
    log = root / "head.log"
    with open(log, "w") as handle:
        # --block: the command stays, and takes every process it started down with it.
        head = subprocess.Popen(
            args, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.time() + 180
        while "Ray runtime started" not in log.read_text() and head.poll() is None:
            assert time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        assert head.poll() is None, log.read_text()[-3000:]
        yield {"client": f"ray://127.0.0.1:{ports['ray-client-server-port']}", "token": token}
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        deadline = time.time() + 30
        while group_members(head.pid) and time.time() < deadline:
            time.sleep(0.2)
        left = group_members(head.pid)
        for pid in left:  # only this cluster's: its own process group
            os.kill(pid, signal.SIGKILL)
        assert not left, f"the cluster left processes running: {left}"


DRIVER = """
import sys
import conftest
import ray.cloudpickle
from pathlib import Path
from drdfl.cli import main
from drdfl.runner import unit

ray.cloudpickle.register_pickle_by_value(conftest)  # the cluster's workers cannot import it
failures = {"lr=0.001/dfl-s0": 2, "lr=0.003/mse-s0": 1}
unit.execute_task = conftest.flaky(failures, Path(sys.argv[1]))
main(sys.argv[2:])
"""


@pytest.mark.slow
def test_a_sweep_on_a_cluster_with_token_authentication(
    cluster: dict[str, object], tmp_path: Path
) -> None:
    out, marks = tmp_path / "out", tmp_path / "marks"
    home = tmp_path / "home"  # the driver's own: no token of the cluster's in it
    home.mkdir()
    env = dict(
        os.environ,
        HOME=str(home),
        DRDFL_CACHE_DIR=str(tmp_path / "cache"),
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=Path(str(cluster["token"])).read_text().strip(),
    )
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]  # + conftest
    args = ["sweep", "--address", str(cluster["client"]), "--out", str(out), "--no-progress"]
    args += ["--grid", "train.lr=1e-3,3e-3", *(a for s in SETS for a in ("--set", s))]
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DRIVER), str(marks), *args],
        env={**env, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *path])},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-3000:]
    assert "6 trial(s): 4 done, 1 failed, 1 not run" in done.stdout, done.stdout
    failed = {t["trial"]: t for t in json.loads((out / "failed.json").read_text())}
    assert failed["lr=0.001/dfl-s0"]["error"] == "RuntimeError: lr=0.001/dfl-s0: injected failure 2"
    assert failed["lr=0.001/wdro-s0"]["status"] == "not run"
    assert set(failed) == {"lr=0.001/dfl-s0", "lr=0.001/wdro-s0"}
    # Retried once each; the blocked unit never started.
    assert attempts(marks) == {
        "lr=0.001/mse-s0": 1,
        "lr=0.001/dfl-s0": 2,
        "lr=0.003/mse-s0": 2,
        "lr=0.003/dfl-s0": 1,
        "lr=0.003/wdro-s0": 1,
    }
    trials = {t["trial"]: t["status"] for t in json.loads((out / "trials.json").read_text())}
    assert trials["lr=0.003/mse-s0"] == trials["lr=0.003/wdro-s0"] == "done"
    assert (out / "points" / "lr=0.003" / "report.md").is_file()


class _FlakyRay:
    """A stand-in for the ``ray`` module whose ``init`` fails as Ray Client does when the
    head could not start the client's own server, ``failures`` times, then joins."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error = failures, error
        self.inits = self.shutdowns = 0
        self.joined = False

    def is_initialized(self) -> bool:
        return self.joined

    def init(self, **kwargs: object) -> None:
        self.inits += 1
        if self.inits <= self.failures:
            raise self.error
        self.joined = True

    def shutdown(self) -> None:
        self.shutdowns += 1
        self.joined = False


ABORTED = ConnectionAbortedError("Initialization failure from server:\n")


@pytest.mark.parametrize(
    ("failures", "error", "inits", "joins"),
    [
        (2, ABORTED, 3, True),  # a transient failure of the head is tried again
        (5, ABORTED, 3, False),  # up to CONNECT_TRIES times
        (5, ConnectionError("InvalidAuthToken"), 1, False),  # a refusal is said at once
    ],
)
def test_joining_a_cluster_retries_only_a_server_that_failed_to_start(
    monkeypatch: pytest.MonkeyPatch, failures: int, error: Exception, inits: int, joins: bool
) -> None:
    from drdfl.errors import DrdflError
    from drdfl.runner import distributed

    fake = _FlakyRay(failures, error)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(distributed, "CONNECT_PAUSE_S", 0.0)
    executor = distributed.RayExecutor(address="ray://127.0.0.1:1")
    if joins:
        with executor.connected():
            assert fake.joined
        assert not fake.joined  # left again after the block
    else:
        with pytest.raises(DrdflError) as caught, executor.connected():
            pass
        message = str(caught.value)
        assert "ray://127.0.0.1:1: cannot connect to the Ray cluster" in message
        assert type(error).__name__ in message and "RAY_AUTH_TOKEN" in message
        assert ("after 3 tries" in message) == (inits == 3)
    assert fake.inits == inits

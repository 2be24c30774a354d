"""The Ray executor: the same plan as Ray core tasks, on a local Ray or a cluster.

Every node is one task; the nodes it needs are passed to it as object refs, so Ray starts
it only after they finish and fails it without running it when one of them failed (it is
then reported "not run"). A task that raises is retried ``retries`` times in a fresh
attempt. On a cluster ``OUT`` and the reference-model cache must be on a shared
filesystem.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from drdfl.errors import DrdflError
from drdfl.runner import unit as unit_module
from drdfl.runner.local import OnDone, Outcome, blocked_by, error_line, not_run
from drdfl.runner.unit import Job

#: what reaching a cluster takes, said when it cannot be reached
CLUSTER_HINT = (
    "check the address (ray://HOST:10001 through Ray Client, or HOST:6379 from a node of "
    "the cluster) and, on a cluster with token authentication, set RAY_AUTH_MODE=token and "
    "RAY_AUTH_TOKEN to what `ray get-auth-token` prints on its head node"
)
#: tries at joining a cluster whose Ray Client server failed to start this client's own
#: server process (ConnectionAbortedError; a transient failure on a busy head), and the
#: pause between them
CONNECT_TRIES = 3
CONNECT_PAUSE_S = 2.0


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DrdflError(
            "drdfl sweep needs Ray, which is not installed; install it with "
            "pip install 'drdfl[sweep]' (or pip install ray)"
        ) from None
    return ray


class RayExecutor:
    """Runs jobs as Ray tasks (joining ``address`` or starting a local Ray unless one is
    running), ``cpus_per_task`` CPUs each, retrying a failed task ``retries`` times."""

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_task: int = 1,
        retries: int = 1,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_task = cpus_per_task
        self.retries = retries

    @contextlib.contextmanager
    def connected(self) -> Iterator[None]:
        """Ray joined (or started) inside the block, unless it runs already; a cluster that
        cannot be reached is one :class:`DrdflError` saying what it needs."""
        ray = require_ray()
        if ray.is_initialized():
            yield
            return
        init: dict[str, Any] = {"address": self.address, "log_to_driver": False}
        if self.address is None:
            init.update(num_cpus=self.num_cpus, include_dashboard=False)
        for attempt in range(1, CONNECT_TRIES + 1):
            try:
                ray.init(**init)
                break
            except Exception as exc:
                if self.address is None:
                    raise
                if isinstance(exc, ConnectionAbortedError) and attempt < CONNECT_TRIES:
                    ray.shutdown()
                    time.sleep(CONNECT_PAUSE_S)
                    continue
                tries = f" after {attempt} tries" if attempt > 1 else ""
                raise DrdflError(
                    f"--address {self.address}: cannot connect to the Ray cluster{tries} "
                    f"({error_line(exc)}); {CLUSTER_HINT}"
                ) from None
        try:
            yield
        finally:
            ray.shutdown()

    def run(self, jobs: list[Job], on_done: OnDone | None = None) -> dict[str, Outcome]:
        """Every job; one outcome per job id."""
        with self.connected():
            return self._run(require_ray(), jobs, on_done)

    def _run(self, ray: Any, jobs: list[Job], on_done: OnDone | None) -> dict[str, Outcome]:
        # Looked up at call time: the task function is whatever the module holds now.
        task = ray.remote(unit_module.execute_task)
        refs: dict[str, Any] = {}
        for job in jobs:
            gpu = 1 if job.cfg.device.startswith("cuda") else 0
            options = task.options(
                num_cpus=self.cpus_per_task,
                num_gpus=gpu,
                max_retries=self.retries,
                retry_exceptions=True,
                name=job.node.id,
            )
            needs = [refs[n] for n in job.node.needs if n in refs]
            refs[job.node.id] = options.remote(job, *needs)
        by_ref = {ref: job for job, ref in zip(jobs, refs.values(), strict=True)}
        outcomes: dict[str, Outcome] = {}
        remaining = list(refs.values())
        results: dict[str, Any] = {}
        while remaining:
            ready, remaining = ray.wait(remaining, num_returns=1)
            job = by_ref[ready[0]]
            try:
                results[job.node.id] = ray.get(ready[0])
                if on_done is not None:
                    on_done(job, results[job.node.id])
            except ray.exceptions.RayTaskError as exc:
                results[job.node.id] = exc
            except ray.exceptions.RayError as exc:  # a lost worker, a cancelled task
                results[job.node.id] = exc
        # Outcomes in plan order, so that a node's needs are settled before it is.
        for job in jobs:
            value = results[job.node.id]
            blocked = blocked_by(job, outcomes)
            if blocked:
                outcomes[job.node.id] = not_run(blocked)
            elif isinstance(value, BaseException):
                cause = getattr(value, "cause", None) or value
                outcomes[job.node.id] = Outcome("failed", error=cause, message=error_line(cause))
            else:
                outcomes[job.node.id] = Outcome("done", value)
        return outcomes


__all__ = ["CLUSTER_HINT", "RayExecutor", "require_ray"]

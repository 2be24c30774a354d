"""The local executor: a plan's nodes side by side in worker processes on this machine.

Each worker is a fresh (spawned) process with one torch thread by default, so ``jobs``
units use ``jobs`` cores without oversubscribing them; a node starts once every node it
needs is done. With one job the nodes run in this process, one after another.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal

from drdfl.runner import unit as unit_module
from drdfl.runner.unit import Job


@dataclass
class Outcome:
    """What became of a node: done (with its summary), failed (with the error) or not run
    (a node it needs did not finish)."""

    status: Literal["done", "failed", "not run"]
    summary: dict[str, Any] | None = None
    error: BaseException | None = None
    message: str = ""


OnDone = Callable[[Job, dict[str, Any]], None]


def blocked_by(job: Job, outcomes: dict[str, Outcome]) -> list[str]:
    """The nodes ``job`` needs that did not finish."""
    return [n for n in job.node.needs if n in outcomes and outcomes[n].status != "done"]


def not_run(blocked: list[str]) -> Outcome:
    return Outcome("not run", message=f"needs {', '.join(blocked)}, which did not finish")


def error_line(exc: BaseException) -> str:
    """An exception as one line: its type and message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` torch intra-op threads inside the block (``None``: leave as is)."""
    import torch

    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


#: set in a pool worker once SIGTERM arrived
_terminated = False


def _execute_in_worker(job: Job) -> dict[str, Any]:
    """``execute_task`` in a pool worker, which once terminated starts no further unit: the
    pool reports a task's SystemExit as the task's error and hands the worker the next
    queued unit, which would otherwise run to its end before the pool shuts down."""
    if _terminated:
        raise SystemExit(128 + signal.SIGTERM)
    return unit_module.execute_task(job)


def _exit(signum: int, frame: Any) -> None:
    global _terminated
    _terminated = True
    raise SystemExit(128 + signum)


def _worker_init(threads: int) -> None:
    """A worker: ``threads`` torch threads; Ctrl-C is the parent's to handle, which stops
    workers with SIGTERM (exiting cleanly, so that their locks are released); and on
    Linux it dies with its parent (a run killed hard leaves no unit writing behind it)."""
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class LocalExecutor:
    """Runs jobs on ``jobs`` local processes (``threads`` torch threads each)."""

    def __init__(self, jobs: int = 1, threads: int | None = None, fail_fast: bool = True) -> None:
        self.jobs = max(1, jobs)
        self.threads = threads
        self.fail_fast = fail_fast

    def run(self, jobs: list[Job], on_done: OnDone | None = None) -> dict[str, Outcome]:
        """Every job whose needs finished; one outcome per job id. With ``fail_fast`` a
        failure stops new jobs from starting (they are "not run")."""
        if self.jobs == 1 or len(jobs) <= 1:
            return self._in_process(jobs, on_done)
        return self._in_pool(jobs, on_done)

    def _in_process(self, jobs: list[Job], on_done: OnDone | None) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        stop = False
        with torch_threads(self.threads):
            for job in jobs:
                blocked = blocked_by(job, outcomes)
                if stop or blocked:
                    outcomes[job.node.id] = not_run(blocked or ["an earlier failure"])
                    continue
                try:
                    summary = unit_module.execute_task(job)
                except Exception as exc:
                    outcomes[job.node.id] = Outcome("failed", error=exc, message=error_line(exc))
                    stop = self.fail_fast
                    continue
                outcomes[job.node.id] = Outcome("done", summary)
                if on_done is not None:
                    on_done(job, summary)
        return outcomes

    def _in_pool(self, jobs: list[Job], on_done: OnDone | None) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        waiting = list(jobs)
        running: dict[Future[dict[str, Any]], Job] = {}
        ids = {j.node.id for j in jobs}
        stop = False
        pool = ProcessPoolExecutor(
            max_workers=min(self.jobs, len(jobs)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(self.threads or 1,),
        )
        try:
            while waiting or running:
                for job in list(waiting):
                    blocked = blocked_by(job, outcomes)
                    if stop or blocked:
                        outcomes[job.node.id] = not_run(blocked or ["an earlier failure"])
                        waiting.remove(job)
                    elif all(n in outcomes for n in job.node.needs if n in ids):
                        running[pool.submit(_execute_in_worker, job)] = job
                        waiting.remove(job)
                if not running:
                    continue
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = running.pop(future)
                    try:
                        summary = future.result()
                    except Exception as exc:
                        outcomes[job.node.id] = Outcome(
                            "failed", error=exc, message=error_line(exc)
                        )
                        stop = stop or self.fail_fast
                        continue
                    outcomes[job.node.id] = Outcome("done", summary)
                    if on_done is not None:
                        on_done(job, summary)
        except BaseException:
            # Ctrl-C or an error here: stop the workers now rather than after their units.
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)  # reaps them, frees their queues
            raise
        pool.shutdown()
        return outcomes


__all__ = ["LocalExecutor", "Outcome", "error_line", "torch_threads"]

"""The local executor: a plan's nodes side by side in worker processes on this machine.

Each worker is a fresh (spawned) process with one torch thread by default, so ``jobs``
units use ``jobs`` cores without oversubscribing them; a node starts once every node it
needs is done. With one job the nodes run in this process, one after another.

Stopping is this process's job, whenever Ctrl-C (or SIGTERM) comes: workers ignore
Ctrl-C from the moment they start, the interrupt is taken between two steps of the
scheduling loop (never half-way through starting a worker), and every worker is then
asked to stop, given a few seconds, and killed if it has not; only then is the
interrupt raised. A worker whose run died stops too (on Linux), also one still starting.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
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


#: the signals that stop a run: Ctrl-C, and SIGTERM as a scheduler or ``timeout`` sends it
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: seconds the workers are given to exit once asked to stop, before they are killed
STOP_GRACE_S = 5.0
#: seconds between two looks at a pending interrupt while units run
_POLL_S = 0.2

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


def _worker_init(threads: int, parent: int) -> None:
    """A worker: Ctrl-C is the parent's to handle (the worker was started with it blocked,
    so that one arriving while it starts is dropped here); on Linux it dies with its
    parent ``parent``, and leaves at once when that has already died (a run killed hard
    leaves no unit writing behind it); ``threads`` torch threads; SIGTERM stops it (until
    it is ready, silently, as the system's default does)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGTERM, _exit)


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[Callable[[], None]]:
    """Hold Ctrl-C and SIGTERM inside the block until the function it yields is called,
    which raises what the signal's own handler raises (KeyboardInterrupt for Ctrl-C);
    one still held at the end is raised then. A signal without a Python handler (ignored,
    or left to the system) is left alone, as is everything off the main thread."""
    caught: list[int] = []
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS:
            handler = signal.getsignal(number)
            if callable(handler):
                previous[number] = handler
                signal.signal(number, lambda signum, frame: caught.append(signum))

    def deliver() -> None:
        if caught:
            number = caught[0]
            caught.clear()
            previous[number](number, None)

    try:
        yield deliver
        deliver()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def _ctrl_c_blocked() -> Iterator[None]:
    """Ctrl-C blocked for this thread inside the block: a worker started here inherits the
    mask and cannot die of a Ctrl-C before it ignores it."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if signal.SIGINT not in blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def stop_pool(pool: ProcessPoolExecutor, grace_s: float = STOP_GRACE_S) -> None:
    """Stop ``pool`` now: no further unit starts, every worker is asked to stop (SIGTERM:
    its unit unwinds and it exits cleanly once the pool lets it go), and those still
    running after ``grace_s`` seconds are killed; returns once they are all reaped."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            with contextlib.suppress(OSError):
                process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            with contextlib.suppress(OSError):
                process.kill()
            process.join()
    if manager is not None and manager.is_alive():
        manager.join(max(0.0, deadline - time.monotonic()) + 1.0)


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
        with _deferred_interrupts() as interrupt:
            pool = ProcessPoolExecutor(
                max_workers=min(self.jobs, len(jobs)),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(self.threads or 1, os.getpid()),
            )
            try:
                while waiting or running:
                    for job in list(waiting):
                        blocked = blocked_by(job, outcomes)
                        if stop or blocked:
                            outcomes[job.node.id] = not_run(blocked or ["an earlier failure"])
                            waiting.remove(job)
                        elif all(n in outcomes for n in job.node.needs if n in ids):
                            with _ctrl_c_blocked():  # submitting may start a worker
                                future = pool.submit(_execute_in_worker, job)
                            running[future] = job
                            waiting.remove(job)
                    if not running:
                        continue
                    finished, _ = wait(running, timeout=_POLL_S, return_when=FIRST_COMPLETED)
                    interrupt()
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
                # Ctrl-C or an error here: stop the workers now rather than after their
                # units, and wait for none of them past the grace period.
                stop_pool(pool)
                raise
            pool.shutdown()
        return outcomes


__all__ = [
    "STOP_GRACE_S",
    "STOP_SIGNALS",
    "LocalExecutor",
    "Outcome",
    "error_line",
    "stop_pool",
    "torch_threads",
]

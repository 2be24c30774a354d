"""Helpers shared by the benchmark scripts: machine facts, peak memory, timing, data paths."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"


def data_dir() -> Path:
    """The directory of the real traces: ``$DRDFL_DATA_DIR``, else ``../shared/data``."""
    configured = os.environ.get("DRDFL_DATA_DIR")
    return Path(configured) if configured else ROOT.parent / "shared" / "data"


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (or the platform's guess)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(threads: int) -> dict[str, Any]:
    """Facts about where and when the numbers were measured (sets torch's thread count)."""
    import torch  # here, so that the runner reads paths without loading torch

    from drdfl.runner.store import git_state

    torch.set_num_threads(threads)
    code = git_state(ROOT / "src", ROOT / "benchmarks" / "*.py")
    return {
        "commit": code["commit"],
        "dirty": code["dirty"],
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux; ignored elsewhere)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _status_mib(field: str) -> float | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"{field}:\s+(\d+) kB", status)
    return round(int(found[1]) / 1024, 1) if found else None


def peak_rss_mib() -> float | None:
    """Peak resident memory (``VmHWM``) of this process since the last reset, in MiB."""
    return _status_mib("VmHWM")


def rss_mib() -> float | None:
    """Resident memory (``VmRSS``) of this process now, in MiB."""
    return _status_mib("VmRSS")


class Stage:
    """Wall time and peak RSS of one block: ``with Stage() as s: …``; then ``s.seconds``.

    The RSS at the start is kept too: memory freed by earlier stages may stay mapped to
    the process, and then counts towards a later stage's peak.
    """

    def __enter__(self) -> Stage:
        reset_peak_rss()
        self.rss_start_mib = rss_mib()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.peak_rss_mib = peak_rss_mib()

    def record(self, **extra: Any) -> dict[str, Any]:
        """``seconds`` and ``peak_rss_mib`` plus ``extra`` facts, as a JSON-ready dict."""
        return {
            "seconds": round(self.seconds, 3),
            "peak_rss_mib": self.peak_rss_mib,
            "rss_start_mib": self.rss_start_mib,
            **extra,
        }


def repeat(fn: Callable[[], float], times: int) -> dict[str, Any]:
    """Call ``fn`` (which returns seconds) ``times`` times: every value and their median."""
    values = [fn() for _ in range(times)]
    runs = [round(v, 3) for v in values]
    return {"median_s": round(statistics.median(values), 3), "runs_s": runs}


@contextlib.contextmanager
def timed(into: dict[str, float], key: str) -> Iterator[None]:
    """Add the block's wall time to ``into[key]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        into[key] = into.get(key, 0.0) + time.perf_counter() - started

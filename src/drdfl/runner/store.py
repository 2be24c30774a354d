"""Where a run lives on disk: the output directory, its lock, unit folders and markers,
input fingerprints and the assembled tables.

Layout of ``OUT``::

    run.json        what the run was started from (configuration and input fingerprints)
    config.toml     the resolved configuration (loading it rebuilds exactly this config)
    .drdfl.lock     held while a run or resume works in OUT (pid and host inside)
    units/<key>/    one unit's results.csv, history.csv, timings.csv, model/, done.json
                    (``key``: :func:`drdfl.records.unit_key`)
    results.csv …   the tables assembled from the finished units, in plan order (the files
                    :mod:`drdfl.records` describes)

A fresh run takes only a new or empty directory; a directory holding anything but a run
of ours is never written to. ``--resume`` refuses a directory whose configuration or
inputs differ, saying which.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from drdfl._io import atomic_open, write_json, write_text
from drdfl._version import __version__
from drdfl.errors import ConfigError, ModelError
from drdfl.records import (
    HISTORIES_FILE,
    RECORD_FILE,
    RESULT_COLUMNS,
    RESULTS_FILE,
    TIMINGS_FILE,
)

#: the record of what a run was started from; its presence marks a directory as ours
RUN_FILE = "run.json"
LOCK_FILE = ".drdfl.lock"
DONE_FILE = "done.json"


def git_state(*paths: str | Path) -> dict[str, Any]:
    """The git commit of the running code and whether it has local changes: in the
    package's own files, or in ``paths`` (``None`` for both when the code is not in a git
    checkout). Run outputs elsewhere in the checkout do not count."""
    here = Path(__file__).resolve().parent
    watched = [str(p) for p in paths] or [str(here.parent)]
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            [
                "git",
                "-C",
                str(here),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                *watched,
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def code_state() -> dict[str, Any]:
    """The running code's version, git commit and whether it has local changes."""
    return {"version": __version__, **git_state()}


def versions() -> dict[str, Any]:
    """Versions of what produced the numbers, with the git commit and dirty flag."""
    import numpy as np
    import pandas as pd
    import torch

    return {
        "drdfl": __version__,
        **{f"git_{k}": v for k, v in git_state().items()},
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """A file's resolved path, size and sha256."""
    from drdfl.data.registry import sha256_file

    p = Path(path).resolve()
    return {"path": str(p), "size": p.stat().st_size, "sha256": sha256_file(p)}


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two JSON-like records."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                out.append(name)
            else:
                out += _differences(old[key], new[key], name)
        return out
    return [] if old == new else [prefix or "<record>"]


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Let an ``OSError`` raised inside the block (a full disk) name ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def _holder(lock: Path) -> str:
    try:
        text = lock.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "another process"


class OutputDir:
    """An output directory that a run (or sweep) claims: exclusive while it works in it,
    and never one that holds another tool's or user's files."""

    def __init__(self, path: str | Path, marker: str = RUN_FILE, what: str = "run") -> None:
        self.path = Path(path)
        self.marker = marker
        self.what = what

    @contextlib.contextmanager
    def claim(self, record: dict[str, Any], resume: bool) -> Iterator[None]:
        """Hold ``path`` for the block: create it (or check that it holds this very
        run when resuming), lock it, and write ``record`` as its marker."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out}: is a file, not a directory")
        created = not out.exists()
        had_lock = (out / LOCK_FILE).exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
            handle = open(out / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held open
        except OSError as exc:
            raise ConfigError(f"--out {out}: cannot write there ({exc.strerror})") from None
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(
                    f"{out} is in use by {_holder(out / LOCK_FILE)}; wait for it to finish "
                    "or choose another --out"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"drdfl pid {os.getpid()} on host {socket.gethostname()}\n")
            handle.flush()
            try:
                self._check(record, resume)
            except BaseException:
                # Leave the directory as it was found.
                if created:
                    shutil.rmtree(out, ignore_errors=True)
                elif not had_lock:
                    (out / LOCK_FILE).unlink(missing_ok=True)
                raise
            write_json(out / self.marker, record)
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def holder(self) -> str | None:
        """Who works in the directory now (its lock's holder: a run or resume), or None."""
        lock = self.path / LOCK_FILE
        try:
            handle = open(lock, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _holder(lock)
            fcntl.flock(handle, fcntl.LOCK_UN)
        return None

    def _check(self, record: dict[str, Any], resume: bool) -> None:
        out = self.path
        present = sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE)
        if not present:
            return
        marker = out / self.marker
        if not marker.is_file():
            shown = ", ".join(present[:5]) + (", …" if len(present) > 5 else "")
            raise ConfigError(
                f"{out} holds files that are not a drdfl {self.what} ({shown}); choose a new "
                "or empty --out"
            )
        # A directory that holds nothing finished is no loss: say it may simply go.
        empty = "" if self._finished() else f", or delete {out} (nothing in it is finished)"
        if not resume:
            raise ConfigError(
                f"{out} already holds a {self.what}; pass --resume to continue it or choose "
                f"another --out{empty}"
            )
        try:
            previous = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{marker}: unreadable ({exc}); cannot resume{empty}") from None
        differs = _differences(previous, record)
        if differs:
            raise ConfigError(
                f"cannot resume {out}: {', '.join(differs)} differ(s) from the {self.what} "
                "it holds; resume with the same profile, config file, --set options, data "
                f"and code, or choose another --out{empty}"
            )

    def _finished(self) -> bool:
        """Whether the directory holds anything finished: a done unit, or results."""
        out = self.path
        return (out / RESULTS_FILE).exists() or any(out.glob(f"**/units/*/{DONE_FILE}"))


class RunStore:
    """The files of one run in ``out``: unit folders, done markers and assembly."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.dir = OutputDir(self.out)

    @contextlib.contextmanager
    def open(self, config_text: str, fingerprint: dict[str, Any], resume: bool) -> Iterator[None]:
        """Claim ``out`` for the block and write its ``config.toml``."""
        with self.dir.claim({"config": config_text, "inputs": fingerprint}, resume):
            try:
                (self.out / "units").mkdir(exist_ok=True)
                write_text(self.out / "config.toml", config_text)
            except OSError as exc:
                raise ConfigError(
                    f"{exc.filename or self.out}: cannot write ({exc.strerror})"
                ) from None
            yield

    def unit_dir(self, key: str) -> Path:
        return self.out / "units" / key

    def is_done(self, key: str) -> bool:
        """Whether unit ``key`` finished and every file its done marker lists is there (one
        deleted, as a hint for a corrupt file says, has the unit redone on resume)."""
        folder = self.unit_dir(key)
        try:
            files = json.loads((folder / DONE_FILE).read_text(encoding="utf-8")).get("files")
        except FileNotFoundError:
            return False
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            return True  # unreadable: said by read_unit, naming the folder to delete
        return all((folder / name).is_file() for name in files or [])

    def read_unit(self, key: str) -> dict[str, Any]:
        """A done unit's tables (``results``, ``history``, ``timings``); a clear error that
        says to delete the unit when one is missing or unreadable."""
        import pandas as pd

        folder = self.unit_dir(key)
        tables: dict[str, Any] = {}
        for name in ("results", "history", "timings"):
            path = folder / f"{name}.csv"
            try:
                if name != "results" and path.stat().st_size <= 1:
                    tables[name] = None
                    continue
                tables[name] = pd.read_csv(path)
            except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
                raise ModelError(
                    f"{path}: missing or corrupt ({type(exc).__name__}); delete {folder} and "
                    "resume to redo that unit"
                ) from None
        results = tables["results"]
        try:
            rows = json.loads((folder / DONE_FILE).read_text(encoding="utf-8")).get("rows")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            rows = -1
        if (
            tuple(results.columns) != RESULT_COLUMNS
            or results["value"].isna().all()
            or (rows is not None and len(results) != rows)
        ):
            raise ModelError(
                f"{folder / 'results.csv'}: not a complete unit table; delete {folder} and "
                "resume to redo that unit"
            )
        return tables


def joined(frames: list[Any], columns: Sequence[str] = ()) -> Any:
    """``frames`` one after another (none: an empty table with ``columns``)."""
    import pandas as pd

    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def write_tables(out: Path, results: Any, histories: Any, timings: Any) -> None:
    """A run's (or a sweep's combined) tables in ``out``, each atomically."""
    for name, frame in (
        (RESULTS_FILE, results),
        (HISTORIES_FILE, histories),
        (TIMINGS_FILE, timings),
    ):
        with naming(out / name), atomic_open(out / name, "w", newline="") as handle:
            frame.to_csv(handle, index=False)


def write_record(
    out: Path, cfg: Any, code: dict[str, Any], results: Any, timings: Any, **facts: Any
) -> None:
    """``results.json`` in ``out``: the profile, resolved configuration and code a run (or
    a sweep) was made with, its own ``facts`` (a run's units and test sets, a sweep's grid
    and points), the versions, and the rows of its results and timings."""
    record = {
        "profile": cfg.name,
        "config": cfg.model_dump(mode="json"),
        "code": code,
        **facts,
        "versions": versions(),
        "results": results.to_dict("records"),
        "timings": timings.to_dict("records"),
    }
    with naming(out / RECORD_FILE):
        write_json(out / RECORD_FILE, record)


def write_unit(
    folder: Path,
    results: Any,
    history: Any,
    timings: Any,
    worst: dict[str, Any],
    summary: dict[str, Any],
) -> None:
    """A unit's tables, its worst cases (``NAME.npy`` per entry of ``worst``) and finally
    its done marker (``summary`` and the files written), each atomically."""
    import numpy as np

    tables = (("results.csv", results), ("history.csv", history), ("timings.csv", timings))
    summary = {**summary, "files": [n for n, _ in tables] + [f"{n}.npy" for n in worst]}
    for name, frame in tables:
        with naming(folder / name), atomic_open(folder / name, "w", newline="") as handle:
            frame.to_csv(handle, index=False)
    for name, array in worst.items():
        path = folder / f"{name}.npy"
        with naming(path), atomic_open(path, "wb") as handle:
            np.save(handle, array)
    with naming(folder / DONE_FILE):
        write_json(folder / DONE_FILE, summary)


__all__ = [
    "DONE_FILE",
    "LOCK_FILE",
    "RUN_FILE",
    "OutputDir",
    "RunStore",
    "code_state",
    "file_fingerprint",
    "git_state",
    "joined",
    "naming",
    "versions",
    "write_record",
    "write_tables",
    "write_unit",
]

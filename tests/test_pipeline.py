"""``drdfl run``: the whole pipeline, its files, and resume after a hard kill."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from conftest import group_members

from drdfl.config import resolve_config
from drdfl.errors import ConfigError
from drdfl.runner.driver import Run
from drdfl.runner.plan import plan_units

TINY = [
    "seeds=0",
    "methods=mse,dfl",
    "train.epochs=1",
    "data.synthetic_days=0.25",
    "evaluation.corruption_severities=[2.0]",
    "evaluation.bootstrap=50",
]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DRDFL_CACHE_DIR", str(tmp_path / "cache"))


def test_plan_puts_dfl_first_and_adds_variants():
    cfg = resolve_config("quick", overrides=["seeds=0,1", "methods=threed,mse"])
    labels = [u.label for u in plan_units(cfg) if u.seed == 0]
    assert labels[:2] == ["mse", "dfl"]  # dfl added: it warm-starts threed
    assert "threed-mse" in labels and labels[-1] == "skyline"
    off = next(u for u in plan_units(cfg) if u.label == "threed-off")
    assert off.method == "threed" and off.params.adversary is False
    cfg = resolve_config("quick", overrides=["methods=threed", "report.adversary_ablation=false"])
    assert "threed-off" not in {u.label for u in plan_units(cfg)}
    cfg = resolve_config("quick", overrides=["methods=threed", "report.budget_sweep=true"])
    assert {u.label for u in plan_units(cfg)} >= {"threed@0.01", "threed@0.2"}


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        resolve_config("quick", overrides=["train.epochs=0"])
    with pytest.raises(ConfigError, match=r"data\.nonsense: unknown key"):
        resolve_config("quick", overrides=["data.nonsense=1"])
    with pytest.raises(ConfigError, match="valid methods"):
        resolve_config("quick", overrides=["methods=dfl,magic"])
    with pytest.raises(ConfigError, match="valid profiles"):
        resolve_config("fastest")


def test_run_writes_tables_and_report(tmp_path):
    cfg = resolve_config("quick", overrides=TINY)
    out = tmp_path / "run"
    table = Run(cfg, out, progress=False).execute()
    assert list(table.columns) == ["method", "seed", "suite", "test_set", "metric", "value"]
    # the quick profile scores online too: on the suite's own test sets
    assert set(table["method"]) == {"mse", "dfl", "skyline", "mse+online", "dfl+online"}
    assert set(table["suite"]) == {"synthetic", "corruptions", "skyline"}
    online = table[table["method"].str.endswith("+online")]
    assert set(online["suite"]) == {"synthetic"}
    main = table[(table.suite == "synthetic") & (table.metric == "normalized_regret")]
    assert len(main) == 2 * 2 * 3 and main["value"].between(0, 10).all()
    for name in ("config.toml", "results.csv", "results.json", "report.md", "report.html"):
        assert (out / name).is_file(), name
    assert list((out / "figures").glob("*.png"))
    meta = json.loads((out / "results.json").read_text())
    assert meta["versions"]["torch"] and meta["profile"] == "quick"
    assert len(meta["code"]["commit"]) == 40 and isinstance(meta["code"]["dirty"], bool)
    assert resolve_config(path=out / "config.toml") == cfg
    report = (out / "report.md").read_text()
    assert "Table I" in report and "| chat (test) |" in report and "skyline" in report
    with pytest.raises(ConfigError, match="already holds a run"):
        Run(cfg, out, progress=False).execute()


def test_a_threed_run_keeps_its_worst_cases_with_the_adversary_on_and_off(tmp_path):
    overrides = [
        *TINY,
        "methods=threed",
        "report.mse_ablation=false",
        "evaluation.skyline=false",
        "diffusion.iterations=50",
        "method_params.threed.pool=16",
        "method_params.threed.adversarial_samples=8",
        "method_params.threed.keep_worst=4",
    ]
    out = tmp_path / "run"
    Run(resolve_config("quick", overrides=overrides), out, progress=False).execute()
    with np.load(out / "samples.npz") as samples:
        on, off = samples["worst_case"], samples["worst_case_off"]
    assert on.shape == off.shape == (4, 64)
    assert not np.array_equal(on, off)
    report = (out / "report.md").read_text()
    assert "(with the same draw, adversary off)" in report
    assert "## 3D-Learning's adversary: budget, regret raise, realism" in report
    assert "| threed |" in report.split("## 3D-Learning's adversary")[1]


def _cli(out, *extra):
    args = [sys.executable, "-m", "drdfl", "run", "--out", str(out), "--no-progress"]
    for item in TINY:
        args += ["--set", item]
    return args + list(extra)


def _kill_when(proc, path_exists, what):
    deadline = time.time() + 300
    while not path_exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert path_exists(), f"{what}: " + (proc.stderr.read().decode() if proc.stderr else "")
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_resume_after_sigkill_gives_the_same_results(tmp_path):
    env = dict(os.environ, DRDFL_CACHE_DIR=str(tmp_path / "cache"))
    whole = tmp_path / "whole"
    subprocess.run(_cli(whole, "--jobs", "1"), check=True, env=env, capture_output=True)

    # Killed and resumed with units side by side: the same bytes as one after another.
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(killed, "--jobs", "2"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    marker = killed / "units" / "mse-s0" / "done.json"
    _kill_when(proc, marker.exists, "no unit finished")
    assert not (killed / "results.csv").exists()
    done = subprocess.run(
        _cli(killed, "--resume", "--jobs", "2"), env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "resuming: " in done.stderr + done.stdout
    pd.testing.assert_frame_equal(
        pd.read_csv(killed / "results.csv"), pd.read_csv(whole / "results.csv")
    )
    assert (killed / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()


def test_resume_after_sigkill_while_the_reference_model_trains(tmp_path):
    sets = ["methods=mse,diffusion-augment", "diffusion.iterations=60", "evaluation.skyline=false"]
    extra = [arg for s in sets for arg in ("--set", s)]
    whole = tmp_path / "whole"
    env = dict(os.environ, DRDFL_CACHE_DIR=str(tmp_path / "cache-whole"))
    subprocess.run(_cli(whole, *extra), check=True, env=env, capture_output=True)

    env = dict(os.environ, DRDFL_CACHE_DIR=str(tmp_path / "cache-killed"))
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(killed, *extra), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    cache = tmp_path / "cache-killed" / "diffusion"
    # entry.json is written as fitting starts and moves with the entry: a fit that ends
    # before the test looks (60 iterations can) is never mistaken for one that never began.
    started = lambda: any(cache.glob("*/entry.json"))  # noqa: E731
    _kill_when(proc, started, "the reference model never started")
    done = subprocess.run(_cli(killed, *extra, "--resume"), env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert (killed / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()
    assert not any(cache.glob("*.partial"))


def test_a_terminated_worker_starts_no_further_unit(monkeypatch):
    # The pool reports a task's SystemExit as its error and hands the worker the next queued
    # unit; once SIGTERM'd, the worker must not run it.
    from drdfl.runner import local, unit

    started = []
    monkeypatch.setattr(unit, "execute_task", lambda job: started.append(job) or {})
    monkeypatch.setattr(local, "_terminated", False)  # restored after the test
    assert local._execute_in_worker("first") == {}
    with pytest.raises(SystemExit):
        local._exit(signal.SIGTERM, None)
    with pytest.raises(SystemExit) as stop:
        local._execute_in_worker("second")
    assert started == ["first"] and stop.value.code == 128 + signal.SIGTERM


def _group_gone(pgid, within=20.0):
    """Whether every process of the group ``pgid`` has exited within ``within`` seconds."""
    deadline = time.time() + within
    while group_members(pgid) and time.time() < deadline:
        time.sleep(0.1)
    return not group_members(pgid)


def _wait_for(proc, ready, what, timeout=300):
    deadline = time.time() + timeout
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert ready() and proc.poll() is None, f"{what}: " + proc.stderr.read()


def _start_in_own_group(tmp_path, out):
    """The tiny run into ``out`` on two workers, in its own process group, to be signalled
    as a terminal's Ctrl-C or ``timeout`` signals one: the run and its workers alike
    (SIGINT handled as the shell leaves it for a foreground job)."""
    return subprocess.Popen(
        _cli(out, "--jobs", "2"),
        env=dict(os.environ, DRDFL_CACHE_DIR=str(tmp_path / "cache")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


# When the signal is sent: so long after the start, or once a file appears (the claimed
# OUT: workers are being spawned and import torch; the first unit folder: units run).
SIGNAL_POINTS = {
    "configuring": (None, 0.5),
    "workers starting": ("run.json", 0.0),
    "workers importing": ("run.json", 1.5),
    "first unit": ("units/*", 0.0),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "point"),
    [(signal.SIGINT, p) for p in SIGNAL_POINTS]
    + [(signal.SIGTERM, "workers importing"), (signal.SIGTERM, "first unit")],
)
def test_a_stop_signal_at_any_point_exits_promptly_and_leaves_no_process(tmp_path, signum, point):
    out = tmp_path / "out"
    proc = _start_in_own_group(tmp_path, out)
    marker, delay = SIGNAL_POINTS[point]
    if marker is not None:
        _wait_for(proc, lambda: any(out.glob(marker)), f"no {marker}")
    time.sleep(delay)
    assert proc.poll() is None, proc.stderr.read()
    sent = time.time()
    os.killpg(proc.pid, signum)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"still running 20 s after {signal.Signals(signum).name}: {err[-3000:]}")
    took = time.time() - sent
    message = (
        "interrupted; finished units are kept: run the same drdfl run command with --resume "
        f"--out {out} to continue"
    )
    assert proc.returncode == 128 + signum, err[-3000:]
    lines = err.strip().splitlines()
    # Before the run command starts, Ctrl-C is typer's: exit 130 without a line.
    assert lines == [message] or (point == "configuring" and lines == []), err[-3000:]
    assert _group_gone(proc.pid), "a worker outlived the run"
    assert took < 20


def test_a_run_killed_while_its_workers_start_leaves_none_working(tmp_path):
    out = tmp_path / "out"
    proc = _start_in_own_group(tmp_path, out)
    # Killed once its workers exist, before any has started a unit: a worker still
    # starting then must not go on to take the run's queued units.
    _wait_for(proc, (out / "run.json").exists, "OUT never claimed")
    time.sleep(0.3)
    assert not list(out.glob("units/*"))
    proc.kill()
    proc.wait()
    assert _group_gone(proc.pid), "a worker outlived the run"
    assert not list(out.glob("units/*/done.json"))


def test_ctrl_c_stops_the_workers_and_says_how_to_resume(tmp_path):
    env = dict(os.environ, DRDFL_CACHE_DIR=str(tmp_path / "cache"))
    out = tmp_path / "out"
    # wdro with many Frank-Wolfe steps is still training when mse finishes: the interrupt
    # lands in a running unit, however fast the rest of the run has become.
    extra = ["--jobs", "2", "--set", "methods=mse,dfl,wdro,kldro", "--set", "train.epochs=4"]
    extra += ["--set", "method_params.wdro.steps=60"]
    proc = subprocess.Popen(
        _cli(out, *extra), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    marker = out / "units" / "mse-s0" / "done.json"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists() and proc.poll() is None
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert err.strip().splitlines() == [
        "interrupted; finished units are kept: run the same drdfl run command with --resume "
        f"--out {out} to continue"
    ]
    done = subprocess.run(_cli(out, *extra, "--resume"), env=env, capture_output=True)
    assert done.returncode == 0, done.stderr

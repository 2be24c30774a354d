"""The runner's plan, store, reference cache and CLI behaviour on bad input and misuse."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from drdfl.cli import main
from drdfl.config import PROFILES, config_to_toml, resolve_config
from drdfl.errors import ConfigError, ModelError
from drdfl.runner import driver
from drdfl.runner.plan import build_plan
from drdfl.runner.reference import ENTRY_FILE, ReferenceCache, _inputs
from drdfl.runner.store import OutputDir
from drdfl.runner.unit import _load_warm_start

TINY = ["seeds=0", "methods=mse,dfl", "train.epochs=1", "data.synthetic_days=0.25"]


def claim(path: Path, record: dict, resume: bool) -> None:
    """Claim ``path`` as a run and release it at once."""
    with OutputDir(path).claim(record, resume):
        pass


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- plan


def test_plan_needs_follow_the_registry() -> None:
    cfg = resolve_config("quick", overrides=["seeds=0,1", "methods=mse,threed,wdro,kldro"])
    plan = build_plan(cfg)
    needs = {n.id: n.needs for n in plan.nodes}
    assert needs["reference-s0"] == () and needs["mse-s0"] == () and needs["dfl-s1"] == ()
    assert needs["threed-s1"] == ("dfl-s1", "reference-s1")
    assert needs["threed-mse-s0"] == ("dfl-s0", "reference-s0")
    assert needs["wdro-s0"] == ("dfl-s0",) and needs["skyline-s0"] == ()
    ids = [n.id for n in plan.nodes]
    assert all(ids.index(n) < ids.index(i) for i, ns in needs.items() for n in ns)
    cold = resolve_config("quick", overrides=["methods=mse,kldro", "warm_start_from_dfl=false"])
    assert {n.id for n in build_plan(cold).nodes} == {
        f"{m}-s{s}" for m in ("mse", "kldro", "skyline") for s in (0, 1)
    }


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_resolved_config_round_trips(profile: str, tmp_path: Path) -> None:
    for sets in ([], ["train.patience=none", "train.scheduler=none", "threads=none"]):
        cfg = resolve_config(profile, overrides=sets)
        path = tmp_path / "config.toml"
        path.write_text(config_to_toml(cfg))
        back = resolve_config(path=path)
        assert back == cfg and back.model_dump() == cfg.model_dump()
        # Without its profile line a full dump is still taken exactly as written.
        raw = tomllib.loads(path.read_text())
        del raw["profile"]
        path.write_text(tomli_w.dumps(raw))
        assert resolve_config(path=path).model_dump(exclude={"profile"}) == cfg.model_dump(
            exclude={"profile"}
        )
    none = resolve_config(profile, overrides=["train.patience=none"])
    assert none.train.patience is None and none.profile == profile
    assert resolve_config(profile, overrides=["train.scheduler=none"]).train.scheduler == "none"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["seeds=0,0"], r"seeds: seed\(s\) \[0\] given more than once"),
        (["data.suite=paper", "data.interval=1min"], "interval applies only to the synthetic"),
        (["data.suite=honest", "data.tokens=total"], "tokens applies only"),
        (["method_params.thredd.budget=0.5"], "method_params.thredd: unknown method"),
        (["method_params.threed.budgte=0.5"], "method_params.threed.budgte: unknown key"),
        # Each of these used to fail only after OUT was claimed (once a unit had trained).
        (["task=nope"], "task: unknown task 'nope'"),
        (["forecaster=transformer"], "forecaster: unknown forecaster 'transformer'"),
        (["seeds=-1"], r"seeds.0: Input should be greater than or equal to 0 \(got -1\)"),
        (["seeds=99999999999999999999"], "seeds.0: Input should be less than or equal to 42949"),
        (["train.seed=-1"], "train.seed: Input should be greater than or equal to 0"),
    ],
)
def test_bad_config_is_one_line_and_leaves_nothing(
    sets: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["run", "--out", str(out), "--no-progress"]
    for item in sets:
        args += ["--set", item]
    code, _, err = _cli(capsys, *args)
    assert code == 2 and "\n" not in err.strip()
    assert err.startswith("error: ") and __import__("re").search(message, err), err
    assert not out.exists()


def test_binary_config_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(bytes(range(256)))
    code, _, err = _cli(capsys, "run", "--config", str(config), "--out", str(tmp_path / "o"))
    assert code == 2 and err.strip() == f"error: {config}: not a text file (expected a TOML config)"


def test_bad_test_files_are_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = (f"2024-05-13T00:{i // 12:02d}:{i % 12 * 5:02d}+00:00,{100 + i % 7}" for i in range(400))
    series = "\n".join(["TIMESTAMP,ContextTokens", *rows]) + "\n"
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "trace.csv").write_text(series)
    out = tmp_path / "out"
    base = ["run", "--out", str(out), "--no-progress"]
    for item in TINY:
        base += ["--set", item]
    code, _, err = _cli(
        capsys,
        *base,
        "--test",
        str(tmp_path / "a/trace.csv"),
        "--test",
        str(tmp_path / "b/trace.csv"),
    )
    assert code == 2 and "two test sets are named 'trace'" in err, err
    assert not out.exists()
    code, _, err = _cli(capsys, *base, "--test", str(tmp_path / "missing.csv"))
    assert code == 2 and "missing.csv" in err and not out.exists()


# ----------------------------------------------------------------------------- store


def test_output_dir_keeps_foreign_files_and_finished_runs(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.csv").write_text("my own numbers\n")
    for resume in (False, True):
        with pytest.raises(ConfigError, match=r"holds files that are not a drdfl run \(results"):
            claim(mine, {"config": "a"}, resume)
    assert sorted(p.name for p in mine.iterdir()) == ["results.csv"]
    assert (mine / "results.csv").read_text() == "my own numbers\n"

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        claim(a_file, {}, False)

    run = tmp_path / "run"
    with OutputDir(run).claim({"config": "a"}, False):
        (run / "results.csv").write_text("finished\n")
    # A finished run (its units deleted) is never overwritten by a fresh run...
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        claim(run, {"config": "b"}, False)
    # ...and a resume names what differs.
    with pytest.raises(ConfigError, match=r"cannot resume .*: config differ"):
        claim(run, {"config": "b"}, True)
    record = {"config": "a", "inputs": {"tests": {"t.csv": {"sha256": "1"}}}}
    claim(tmp_path / "r2", record, False)
    changed = {"config": "a", "inputs": {"tests": {"t.csv": {"sha256": "2"}}}}
    with pytest.raises(ConfigError, match=r"inputs\.tests\.t\.csv\.sha256 differ"):
        claim(tmp_path / "r2", changed, True)
    claim(tmp_path / "r2", record, True)


def test_a_run_with_nothing_finished_says_it_may_be_deleted(tmp_path: Path) -> None:
    out = tmp_path / "run"
    claim(out, {"config": "a"}, False)  # a run that stopped before any unit finished
    hint = f", or delete {out} \\(nothing in it is finished\\)"
    with pytest.raises(ConfigError, match=f"already holds a run; pass --resume .*{hint}$"):
        claim(out, {"config": "a"}, False)
    with pytest.raises(ConfigError, match=f"config differ.*{hint}$"):
        claim(out, {"config": "b"}, True)
    done = out / "units" / "mse-s0" / "done.json"
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    for config, resume in (("a", False), ("b", True)):
        with pytest.raises(ConfigError) as refused:
            claim(out, {"config": config}, resume)
        assert "delete" not in str(refused.value)


def test_a_second_run_on_a_locked_directory_names_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with (
        OutputDir(out).claim({"config": "a"}, False),
        pytest.raises(ConfigError, match=r"is in use by drdfl pid \d+ on host "),
    ):
        claim(out, {"config": "a"}, True)
    claim(out, {"config": "a"}, True)  # released afterwards


def test_report_without_results_says_resume_rebuilds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claim(tmp_path / "run", {"config": "a"}, False)
    code, _, err = _cli(capsys, "report", str(tmp_path / "run"))
    assert code == 2 and "--resume" in err and "rebuilds it" in err


def test_ctrl_c_exits_130_with_how_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: driver.Run, executor: object = None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(driver.Run, "execute", interrupted)
    out = tmp_path / "out"
    code, _, err = _cli(capsys, "run", "--out", str(out), "--no-progress")
    assert code == 130
    assert err.strip().splitlines() == [
        f"interrupted; finished units are kept: run the same drdfl run command with --resume "
        f"--out {out} to continue"
    ]


def test_a_corrupt_warm_start_says_which_unit_to_delete(tmp_path: Path) -> None:
    unit = tmp_path / "units" / "dfl-s0"
    (unit / "model").mkdir(parents=True)
    (unit / "done.json").write_text("{}")
    (unit / "model" / "model.json").write_text(json.dumps({"format": "drdfl-model"}))
    (unit / "model" / "model.pt").write_bytes(b"garbage")
    with pytest.raises(ModelError, match=f"delete {unit} and resume"):
        _load_warm_start(unit)


# ----------------------------------------------------------------------------- reference cache


def test_reference_cache_key_covers_the_preset_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drdfl.diffusion import model as diffusion_model

    cfg = resolve_config("quick")
    series = np.linspace(0.0, 1.0, 500)
    cache = ReferenceCache(tmp_path)
    before = cache.path(cfg.diffusion, series, 0)
    tiny = diffusion_model.PRESETS["tiny"]
    changed = diffusion_model.Preset(
        tiny.name, tiny.model, tiny.train.model_copy(update={"lr": tiny.train.lr / 2}), tiny.about
    )
    monkeypatch.setitem(diffusion_model.PRESETS, "tiny", changed)
    assert cache.path(cfg.diffusion, series, 0) != before
    assert cache.path(cfg.diffusion, series, 1) != cache.path(cfg.diffusion, series, 0)


def test_a_corrupt_cache_entry_says_to_delete_it(tmp_path: Path) -> None:
    cfg = resolve_config("quick")
    series = np.linspace(0.0, 1.0, 500)
    cache = ReferenceCache(tmp_path)
    entry = cache.path(cfg.diffusion, series, 0)
    entry.mkdir(parents=True)
    (entry / ENTRY_FILE).write_text(json.dumps(_inputs(cfg.diffusion, series, 0)))
    (entry / "diffusion.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(
        ModelError, match=f"delete {entry} and run the command again, with --resume"
    ):
        cache.lookup(cfg.diffusion, series, 0)
    (entry / ENTRY_FILE).write_text(json.dumps({**_inputs(cfg.diffusion, series, 0), "seed": 9}))
    with pytest.raises(ModelError, match="trained with other seed"):
        cache.lookup(cfg.diffusion, series, 0)


def test_a_full_disk_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import pandas as pd

    from drdfl.runner import store

    def full(path: object, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "atomic_open", full)
    frame = pd.DataFrame({"a": [1]})
    with pytest.raises(OSError, match="No space left") as exc:
        store.write_unit(tmp_path, frame, frame, frame, {}, {})
    assert exc.value.filename == str(tmp_path / "results.csv")

    def failing_run(self: driver.Run, executor: object = None) -> None:
        store.write_unit(tmp_path, frame, frame, frame, {}, {})

    monkeypatch.setattr(driver.Run, "execute", failing_run)
    code, _, err = _cli(capsys, "run", "--out", str(tmp_path / "out"), "--no-progress")
    assert code == 2
    assert err.strip() == f"error: {tmp_path / 'results.csv'}: No space left on device"


def test_a_truncated_unit_table_is_never_assembled(tmp_path: Path) -> None:
    import pandas as pd

    from drdfl.runner.store import RunStore, write_unit

    store = RunStore(tmp_path)
    folder = store.unit_dir("dfl-s0")
    folder.mkdir(parents=True)
    results = pd.DataFrame(
        {
            "method": "dfl",
            "seed": 0,
            "suite": "synthetic",
            "test_set": ["a", "b", "c"],
            "metric": "regret",
            "value": [1.0, 2.0, 3.0],
        }
    )
    write_unit(folder, results, pd.DataFrame(), pd.DataFrame(), {}, {"rows": 3})
    assert store.read_unit("dfl-s0")["results"]["value"].tolist() == [1.0, 2.0, 3.0]
    text = (folder / "results.csv").read_text()
    (folder / "results.csv").write_text(text[: len(text) // 2 + 5])
    with pytest.raises(ModelError, match=f"delete {folder} and resume"):
        store.read_unit("dfl-s0")


def test_the_skyline_trains_on_distinct_windows_within_the_methods_budget(data_dir):
    from drdfl.evaluation.metrics import unique_windows
    from drdfl.runner.unit import RunData

    cfg = resolve_config("paper", overrides=[f"data.data_dir={data_dir}"])
    data = RunData(cfg.data, cfg.evaluation)
    budget = len(data.suite.data.train) + len(data.suite.data.val)
    parts = data.skyline_parts
    assert set(parts) == {t.name for t in data.suite.tests}
    for name, (fit, score, _) in parts.items():
        first, _ = unique_windows(fit)
        assert len(first) == len(fit), name  # no window twice
        assert 2 <= len(fit) <= budget, name
        assert np.all(np.diff(fit.start) > 0), name  # time order
        # trained only on the set's first 70 %, scored on windows after it
        assert fit.start.max() < score.start.min(), name
    # The tiled 2023 code file holds one hour of distinct windows; 24V has more than the
    # budget and is thinned evenly across its first 70 %.
    assert len(parts["23D"][0]) < 300
    assert len(parts["24V"][0]) == budget

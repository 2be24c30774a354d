"""The operator's planner: ``drdfl plan`` and ``drdfl backtest`` on a saved model, the
autoscaler rules, and what a replay may and may not read."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from drdfl.cli import main
from drdfl.config import DataConfig
from drdfl.data.readers import binned
from drdfl.data.series import Series
from drdfl.data.synthetic import generate
from drdfl.evaluation.backtest import (
    COLUMNS,
    LastValue,
    ModelPolicy,
    MovingAverage,
    OnlineModelPolicy,
    Oracle,
    Reactive,
    RecentQuantile,
    backtest,
    matched_headroom,
    with_headroom,
)
from drdfl.methods.settings import TrainConfig
from drdfl.serve import load_planner, read_demand
from drdfl.tasks import ReplicasTask

LEAD, HORIZON = 3, 2


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def _train(directory: Path, task: str) -> Path:
    from drdfl.runner.steps import build_suite, save_trained, train_model

    suite = build_suite(DataConfig(synthetic_days=0.3, lead=LEAD, horizon=HORIZON))
    model, _ = train_model(
        "mse", suite, task=task, forecaster="mlp", train=TrainConfig(epochs=1, patience=None)
    )
    return save_trained(model, suite, directory)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("replicas") / "model", "replicas")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Series]:
    series = generate(0.1, "chat", seed=9)
    path = tmp_path_factory.mktemp("history") / "history.csv"
    binned.write(series, path)
    return path, series


# ----------------------------------------------------------------------------- plan


def test_plan_is_the_models_decision_after_the_lead(model_dir: Path, history: tuple) -> None:
    _, series = history
    planner = load_planner(model_dir)
    assert (planner.window, planner.horizon, planner.lead) == (7, HORIZON, LEAD)
    task = planner.replicas
    assert isinstance(task, ReplicasTask) and task.interval_s == 5.0
    made = planner.plan(series.values, series.start)
    n = len(series)
    assert made.slot.tolist() == [n + LEAD, n + LEAD + 1]
    assert made.start is not None and made.start[0] == series.start + pd.Timedelta(
        seconds=5 * (n + LEAD)
    )
    # the forecast is the forecaster's on the last window, in tokens
    x = torch.as_tensor(planner.scaler.transform(series.values[-7:]), dtype=torch.float32)
    with torch.inference_mode():
        expected = planner.scaler.inverse_transform(planner.forecaster(x[None]).double())[0]
    np.testing.assert_allclose(made.forecast_tokens, np.maximum(expected.numpy(), 0), rtol=1e-6)
    y = torch.as_tensor(made.forecast_tokens)
    np.testing.assert_array_equal(made.replicas, task.decide(y[None])[0].numpy())
    np.testing.assert_allclose(
        made.expected_cost, task.operating_cost(torch.as_tensor(made.replicas), y).numpy()
    )
    frame = made.frame()
    assert list(frame.columns) == ["slot_start", "forecast_tokens", "replicas", "expected_cost"]


def test_drdfl_plan_writes_the_plan_and_its_figure(
    model_dir: Path, history: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, series = history
    out = tmp_path / "plan.csv"
    code, _, err = _run(["plan", str(model_dir), "--history", str(path), "-o", str(out)], capsys)
    assert code == 0, err
    plan = pd.read_csv(out)
    assert list(plan.columns) == ["slot_start", "forecast_tokens", "replicas", "expected_cost"]
    first = pd.Timestamp(plan["slot_start"].iloc[0])
    assert first == series.start + pd.Timedelta(seconds=5 * (len(series) + LEAD))
    assert (plan["replicas"] >= 1).all() and plan["replicas"].dtype == np.int64
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # without timestamps the slots are numbered from the history's first
    bare = tmp_path / "bare.csv"
    pd.DataFrame({"ContextTokens": series.values}).to_csv(bare, index=False)
    code, text, err = _run(["plan", str(model_dir), "--history", str(bare)], capsys)
    assert code == 0, err
    assert text.splitlines()[1].split(",")[0] == str(len(series) + LEAD)


def test_plan_reads_a_raw_per_request_trace_at_the_models_interval(
    model_dir: Path, data_dir: Path
) -> None:
    trace = data_dir / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv"
    series = read_demand(trace, 5.0)
    assert series.interval_s == 5.0 and series.start is not None
    made = load_planner(model_dir).plan(series.values, series.start)
    assert made.start is not None and made.start[0] > series.start


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("minute", "binned at 1min .*the model plans slots of 5s"),
        ("short", "3 slot\\(s\\) of 5 s; the model needs at least 7 \\(its window\\)"),
        ("negative", "line 4: .*-5"),
        ("text", "line 3: .*'lots'"),
    ],
)
def test_a_bad_history_is_one_line_naming_what_was_expected(
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    message: str,
) -> None:
    path = tmp_path / "history.csv"
    if content == "minute":
        binned.write(generate(0.05, "chat", seed=1, interval_s=60.0), path)
    elif content == "short":
        pd.DataFrame({"ContextTokens": [1.0, 2.0, 3.0]}).to_csv(path, index=False)
    elif content == "negative":
        path.write_text("ContextTokens\n1\n2\n-5\n" + "4\n" * 10)
    else:
        path.write_text("ContextTokens\n1\nlots\n" + "4\n" * 10)
    code, _, err = _run(["plan", str(model_dir), "--history", str(path)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def test_a_model_of_another_task_plans_with_the_replicas_task_it_is_given(
    tmp_path: Path, history: tuple, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = history
    model = _train(tmp_path / "prov", "provisioning")
    code, _, err = _run(["plan", str(model), "--history", str(path)], capsys)
    assert code == 2 and "--task replicas" in err
    args = ["plan", str(model), "--history", str(path), "--task", "replicas:strict"]
    code, text, err = _run([*args, "--task-param", "max_replicas=40"], capsys)
    assert code == 0, err
    assert (
        load_planner(model, "replicas:strict", {"max_replicas": 40}).replicas.params.max_replicas
        == 40
    )
    assert len(text.strip().splitlines()) == 1 + HORIZON


# ----------------------------------------------------------------------------- backtest


def _task() -> ReplicasTask:
    return ReplicasTask("balanced", interval_s=5.0, min_replicas=0)


def test_every_policy_decides_only_from_what_was_known(model_dir: Path) -> None:
    """Changing the demand from slot k on changes no decision made at or before k."""
    planner = load_planner(model_dir)
    demand = generate(0.08, "chat", seed=3).values
    k = 700
    later = demand.copy()
    later[k:] = later[k:][::-1] * 1.7
    policies = [
        LastValue(),
        MovingAverage(),
        Reactive(),
        RecentQuantile(),
        ModelPolicy(planner),
        OnlineModelPolicy(planner),
    ]
    a = backtest(demand, policies, planner.replicas, LEAD)
    b = backtest(later, policies, planner.replicas, LEAD)
    decided_at = a.slots - LEAD
    before = decided_at <= k
    assert before.sum() > 300 and (~before).sum() > 300
    for p in policies:
        np.testing.assert_array_equal(a.replicas[p.name][before], b.replicas[p.name][before])
        assert not np.array_equal(a.replicas[p.name], b.replicas[p.name]), p.name


def test_the_rules_are_the_autoscalers_they_name() -> None:
    task = _task()
    rng = np.random.default_rng(0)
    per = task.tokens_per_replica_slot
    demand = rng.gamma(4.0, per, size=400)
    lead = 2
    rules = [LastValue(), MovingAverage(60.0), Reactive(0.5, 15.0, 60.0), RecentQuantile(100.0)]
    result = backtest(demand, [*rules, Oracle()], task, lead)
    decided_at = result.slots - lead
    reference: dict[str, list[float]] = {r.name: [] for r in rules}
    for t in decided_at:  # the rules one decision at a time, as written in their docs
        seen = demand[:t]
        reference["last-value"].append(float(task.optimal_replicas(torch.tensor([seen[-1]]))))
        reference["moving-average"].append(
            float(task.optimal_replicas(torch.tensor([seen[-12:].mean()])))
        )
        wanted = [
            np.ceil(demand[s - 3 : s].mean() / (per * 0.5) - 1e-9) for s in range(t - 11, t + 1)
        ]
        reference["reactive"].append(float(np.clip(max(wanted), 0, 64)))
        reference["recent-quantile"].append(float(task.optimal_replicas(torch.tensor(seen[-20:]))))
    for name, values in reference.items():
        np.testing.assert_array_equal(result.replicas[name], values, err_msg=name)
    np.testing.assert_array_equal(
        result.replicas["oracle"],
        task.optimal_replicas(torch.tensor(demand[result.slots])[:, None]),
    )


def test_the_summary_prices_what_each_policy_ran() -> None:
    task = _task()
    demand = np.random.default_rng(1).gamma(3.0, task.tokens_per_replica_slot, size=3000)
    result = backtest(demand, [LastValue(), RecentQuantile()], task, lead=4, slo_target=0.02)
    table = result.table.set_index("policy")
    assert list(result.table.columns) == list(COLUMNS)
    r = result.replicas["last-value"]
    y = demand[result.slots]
    capacity = r * task.tokens_per_replica_slot
    unserved = np.maximum(y - capacity, 0)
    row = table.loc["last-value"]
    assert row["gpu_hours"] == pytest.approx(r.sum() * 5 / 3600)
    assert row["unserved_share"] == pytest.approx(unserved.sum() / y.sum())
    assert row["slo_violation_share"] == pytest.approx(np.mean(y > capacity))
    assert row["cost"] == pytest.approx(4.0 * r.sum() * 5 / 3600 + 2e-6 * unserved.sum())
    # the matched SLO: the least factor that meets the target
    factor = row["headroom_at_slo"]
    per = task.tokens_per_replica_slot
    assert np.mean(y > with_headroom(r, factor, task) * per) <= 0.02
    assert np.mean(y > with_headroom(r, factor / 1.002, task) * per) > 0.02
    assert row["gpu_hours_at_slo"] == pytest.approx(with_headroom(r, factor, task).sum() * 5 / 3600)
    assert np.isnan(matched_headroom(np.zeros(10), np.ones(10), task, 0.0))


def test_a_trace_too_short_for_the_policies_and_lead_is_refused() -> None:
    with pytest.raises(Exception, match="needs more than"):
        backtest(np.ones(50), [RecentQuantile()], _task(), lead=10)


def test_drdfl_backtest_writes_the_table_and_the_figure(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "day.csv"
    binned.write(generate(0.1, "chat", seed=4), trace)
    out = tmp_path / "bt"
    code, _, err = _run(["backtest", str(model_dir), "--trace", str(trace), "-o", str(out)], capsys)
    assert code == 0, err
    table = pd.read_csv(out / "backtest.csv")
    assert list(table.columns[:5]) == [
        "policy",
        "gpu_hours",
        "unserved_share",
        "slo_violation_share",
        "cost",
    ]
    assert set(table["policy"]) == {
        "model",
        "model+online",
        "last-value",
        "moving-average",
        "reactive",
        "recent-quantile",
        "oracle",
    }
    assert (table["gpu_hours"] > 0).all()
    assert (out / "backtest.png").read_bytes()[:4] == b"\x89PNG"
    series = pd.read_csv(out / "backtest_series.csv")
    assert len(series) == len(generate(0.1, "chat", seed=4).values) - series["slot"].iloc[0]

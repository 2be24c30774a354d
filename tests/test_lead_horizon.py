"""Lead time and horizon end to end: deciding at slot t for slots t+L … t+L+h-1 through the
windows, the paper's windows, diffusion segments, every method, saved models and
evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_diffusion, tiny_method_kwargs

from drdfl.config import DataConfig
from drdfl.data.paper import paper_windows
from drdfl.data.training import TrainingData
from drdfl.data.windows import Scaler, make_windows, split_series
from drdfl.diffusion.model import DiffusionModel
from drdfl.diffusion.segments import segments_to_windows
from drdfl.errors import ConfigError
from drdfl.methods import METHODS, get_method
from drdfl.methods.settings import TrainConfig
from drdfl.models.forecasters import build_forecaster
from drdfl.tasks import get_task

WINDOW, HORIZON, LEAD = 7, 3, 4


def test_make_windows_skips_the_lead_between_inputs_and_targets() -> None:
    values = np.arange(40, dtype=np.float32)
    w = make_windows(values, WINDOW, HORIZON, lead=LEAD)
    assert w.lead == LEAD and w.span == WINDOW + LEAD + HORIZON
    assert len(w) == 40 - w.span + 1
    for i in (0, 5, len(w) - 1):
        s = int(w.start[i])
        np.testing.assert_array_equal(w.x[i], values[s : s + WINDOW])
        np.testing.assert_array_equal(
            w.y[i], values[s + WINDOW + LEAD : s + WINDOW + LEAD + HORIZON]
        )
    # lead 0 is the old windowing
    zero = make_windows(values, WINDOW, HORIZON)
    np.testing.assert_array_equal(zero.y[:, 0], values[WINDOW : 40 - HORIZON + 1])
    assert w.subset(np.arange(3)).lead == LEAD
    with pytest.raises(Exception, match="7 inputs \\+ 31 lead \\+ 3 targets"):
        make_windows(values, WINDOW, HORIZON, lead=31)


def test_paper_windows_and_segments_cut_like_make_windows() -> None:
    rows = np.arange(64 * 2 * 28, dtype=np.float64).reshape(128, 28)
    w = paper_windows(rows, WINDOW, HORIZON, lead=LEAD)
    flat = rows.reshape(-1)
    s = w.start
    np.testing.assert_array_equal(w.y[:, 0], flat[s + WINDOW + LEAD])
    np.testing.assert_array_equal(w.x[:, -1], flat[s + WINDOW - 1])
    # no window crosses a row: 28 - (7 + 4 + 3) + 1 = 15 positions per row
    assert len(w) == 128 * 15

    segments = np.arange(3 * 20, dtype=np.float32).reshape(3, 20)
    cut = segments_to_windows(segments, WINDOW, HORIZON, lead=LEAD)
    per_row = [make_windows(row, WINDOW, HORIZON, lead=LEAD) for row in segments]
    np.testing.assert_array_equal(cut.y, np.concatenate([p.y for p in per_row]))
    np.testing.assert_array_equal(cut.x, np.concatenate([p.x for p in per_row]))
    assert cut.lead == LEAD


def test_suites_leave_a_gap_of_the_whole_span_and_carry_the_lead() -> None:
    from drdfl.runner.steps import build_suite

    suite = build_suite(DataConfig(synthetic_days=0.2, window=WINDOW, horizon=HORIZON, lead=LEAD))
    data = suite.data
    assert data.train.lead == LEAD and data.val is not None and data.val.lead == LEAD
    assert all(t.windows.lead == LEAD and t.windows.horizon == HORIZON for t in suite.tests)
    # the training windows are cut from the training series itself
    series = data.series
    i = len(data.train) // 2
    s = int(data.train.start[i])
    np.testing.assert_allclose(data.train.y[i], series[s + WINDOW + LEAD : s + WINDOW + LEAD + 3])


def _data(days: float = 0.04, seed: int = 5) -> TrainingData:
    from drdfl.data.synthetic import generate

    train, val = split_series(generate(days, "chat", seed=seed), (0.8, 0.2))
    scaler = Scaler.fit(train.values)
    series = scaler.transform(train.values)
    return TrainingData(
        make_windows(series, WINDOW, HORIZON, name="train", lead=LEAD),
        make_windows(scaler.transform(val.values), WINDOW, HORIZON, name="val", lead=LEAD),
        scaler,
        series,
    )


def test_augmentations_read_the_target_slots_after_the_lead() -> None:
    from drdfl.methods.augment import _window_slots

    data = _data()
    x_index, y_index = _window_slots("test", data, torch.device("cpu"))
    series = torch.as_tensor(data.series, dtype=torch.float32)
    torch.testing.assert_close(series[x_index], torch.as_tensor(data.train.x))
    torch.testing.assert_close(series[y_index], torch.as_tensor(data.train.y))


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return _data()


@pytest.fixture(scope="module")
def diffusion(data: TrainingData) -> DiffusionModel:
    return tiny_diffusion(data, 10)


@pytest.mark.parametrize("task_spec", ["provisioning", "replicas"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_with_a_lead_and_a_horizon(
    name: str, task_spec: str, data: TrainingData, diffusion: DiffusionModel
) -> None:
    task, _ = get_task(task_spec).fit_to_data(
        data.scaler.inverse_transform(data.series), data.interval_s
    )
    train = TrainConfig(epochs=1, batch_size=64, patience=None, seed=3)
    method = get_method(name, train=train, **tiny_method_kwargs(name, diffusion))
    forecaster = build_forecaster("mlp", WINDOW, HORIZON, seed=1, hidden=(16,))
    try:
        result = method.fit(data, task, forecaster)
    except ConfigError as exc:  # a rule that reads further back than the window refuses
        assert "data.window" in str(exc), exc
        return
    assert result.history and all(math.isfinite(r["val_regret"]) for r in result.history)
    out = result.forecaster(torch.as_tensor(data.val.x[:5]))
    assert out.shape == (5, HORIZON)


def test_a_saved_model_keeps_its_lead_and_is_evaluated_with_it(tmp_path: Path) -> None:
    from drdfl.artifacts import load_model
    from drdfl.runner.steps import build_suite, evaluate_model, save_trained, train_model

    cfg = DataConfig(synthetic_days=0.2, window=WINDOW, horizon=HORIZON, lead=LEAD)
    suite = build_suite(cfg)
    model, _ = train_model(
        "mse",
        suite,
        task="replicas",
        forecaster="linear",
        train=TrainConfig(epochs=1, patience=None),
    )
    save_trained(model, suite, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert (loaded.window, loaded.horizon, loaded.lead) == (WINDOW, HORIZON, LEAD)
    assert loaded.task.to_dict() == model.task.to_dict()
    table, _, _ = evaluate_model(tmp_path / "m")
    windows = table[table.metric == "windows"].set_index("test_set")["value"]
    expected = {t.name: len(t.windows) for t in suite.tests}
    assert windows.to_dict() == pytest.approx(expected)

"""3D-Learning's inner maximisation on a problem whose worst case is known.

Demand is i.i.d. Gaussian and the forecaster a constant at the mean, so the forecaster's
regret grows with the distance of demand from that constant: the worst case moves mass
away from the mean, and nothing about it depends on the forecaster's training.
"""

import numpy as np
import pytest
import torch

from drdfl.data.windows import Scaler, make_windows
from drdfl.diffusion.divergence import path_kl
from drdfl.diffusion.model import get_preset
from drdfl.diffusion.samplers import run_tail
from drdfl.diffusion.schedule import NoiseSchedule
from drdfl.errors import ConfigError
from drdfl.methods import TrainingData, get_method
from drdfl.methods.ambiguity import t_prime_for_noise_level
from drdfl.methods.reference import reference_model
from drdfl.methods.registry import METHODS, SHARED_HISTORY
from drdfl.methods.settings import TrainConfig
from drdfl.models.forecasters import build_forecaster
from drdfl.tasks import get_task

TASK = get_task("provisioning")


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    demand = rng.normal(200_000, 40_000, 6000).clip(1000)
    scaler = Scaler.fit(demand)
    u = scaler.transform(demand)
    data = TrainingData(make_windows(u, 7, 1), None, scaler, u)
    forecaster = build_forecaster("linear", 7, 1, seed=0)
    with torch.no_grad():
        forecaster.linear.weight.zero_()
        forecaster.linear.bias.fill_(float(u.mean()))
    reference = reference_model(None, demand, "tiny", 300, seed=0)
    return data, forecaster, reference


def _prepared(problem, **params):
    data, forecaster, reference = problem
    method = get_method(
        "threed",
        train=TrainConfig(epochs=1),
        diffusion=reference,
        **{"pool": 64, "minibatch": 32, **params},
    )
    method._task, method._scaler = TASK, data.scaler
    method._x, method._y = data.train.tensors()
    gen = torch.Generator().manual_seed(0)
    method.prepare(data, TASK, forecaster, gen)
    return method, gen


def _crn_regret(method, forecaster, model, starts, seed: int) -> float:
    """Mean regret of ``model``'s tails from ``starts`` with noise drawn from ``seed``."""
    noise = method.noise(len(starts), torch.Generator().manual_seed(seed))
    with torch.no_grad():
        x, _ = run_tail(model.eps, model.schedule, starts, method.tail_t, noise)
    segments = method.to_forecaster_units(model.from_model_space(x))
    return float(method.segment_losses(segments, forecaster, "regret").mean())


def _fresh_kl(method, seed: int, n: int = 128) -> float:
    gen = torch.Generator().manual_seed(seed)
    starts = method.train_starts[torch.randint(0, len(method.train_starts), (n,), generator=gen)]
    noise = method.noise(n, gen)
    kl = path_kl(method.adversary, method.reference, starts, method.tail_t, noise)
    return float(kl.mean())


def test_budget_holds_after_every_step_on_fresh_trajectories(problem):
    _, forecaster, _ = problem
    # The budget is per segment slot; the tiny preset's segments have 64 slots.
    method, gen = _prepared(problem, budget=5.0 / 64, adversary_lr=3e-3)
    budget = method.budget
    assert budget == pytest.approx(5.0)
    opt = torch.optim.Adam(method.adversary.parameters(), lr=method.adversary_lr)
    method.adversary.train()
    fresh = []
    for step in range(6):
        method.set.step(forecaster, opt, gen)
        fresh.append(_fresh_kl(method, seed=100 + step))
    assert max(fresh) <= budget
    assert max(fresh) >= 0.5 * budget  # the budget binds: the test is not vacuous
    assert all(kl <= budget for kl in method.set.kl_trace)


def test_adversary_raises_regret_on_fresh_samples_within_budget(problem):
    _, forecaster, reference = problem
    method, gen = _prepared(problem, budget=20.0 / 64, adversary_steps=8, adversary_lr=1e-2)
    budget = method.budget
    method.maximise(forecaster, gen)
    # Pool states the adversary never trained on, the same noise for θ and θ₀.
    held = method.held_starts
    adv = _crn_regret(method, forecaster, method.adversary, held, seed=11)
    ref = _crn_regret(method, forecaster, reference, held, seed=11)
    assert adv > 1.05 * ref
    assert _fresh_kl(method, seed=5) <= budget


def test_adversary_off_is_the_reference(problem):
    _, forecaster, reference = problem
    method, gen = _prepared(problem, adversary=False)
    method.maximise(forecaster, gen)
    assert _fresh_kl(method, seed=1) == 0.0
    starts = method.held_starts
    assert _crn_regret(method, forecaster, method.adversary, starts, 3) == _crn_regret(
        method, forecaster, reference, starts, 3
    )


def test_t_prime_by_noise_level():
    config = get_preset("fast").model
    schedule = NoiseSchedule.build(config.schedule, config.T, config.beta_start, config.beta_end)
    t = t_prime_for_noise_level(schedule, 0.5)
    assert schedule.alpha_bars[t] >= 0.5 > schedule.alpha_bars[t + 1]
    method = get_method("threed", alpha_bar_min=0.5)  # fitted with the `fast` preset
    assert method.t_prime == t
    assert method.tail_t[0] == t and method.tail_t[-1] == 0 and len(method.tail_t) == 11
    assert get_method("threed", t_prime=40).t_prime == 40
    assert get_method("threed", ambiguity="paper").t_prime == 10
    with pytest.raises(ConfigError, match="alpha_bar_min: 0.9999 leaves no reverse step"):
        get_method("threed", alpha_bar_min=0.9999)


def test_bad_inputs_fail_before_training(problem):
    data, forecaster, reference = problem
    with pytest.raises(ConfigError, match="budget: the path-KL budget must be > 0"):
        get_method("threed", budget=0.0)
    with pytest.raises(ConfigError, match="method_params.threed.budget"):
        get_method("threed", budget=-1.0)
    too_far = reference.T + 1
    with pytest.raises(ConfigError, match=f"t_prime: {too_far} exceeds .* T = {reference.T}"):
        get_method("threed", diffusion=reference, t_prime=too_far)
    with pytest.raises(ConfigError, match="method_params.threed: kappa: Input should be less"):
        get_method("threed", ambiguity="paper", kappa=1.5)
    # θ₀ fitted to another series: its scaler's range is not the training series' range.
    other = Scaler(data.scaler.lo, 2 * data.scaler.hi)
    data_other = TrainingData(data.train, None, other, data.series)
    method = get_method("threed", train=TrainConfig(epochs=1), diffusion=reference)
    before = {k: v.clone() for k, v in forecaster.state_dict().items()}
    with pytest.raises(ConfigError, match="θ₀ was fitted to a series ranging"):
        method.fit(data_other, TASK, forecaster)
    assert all(torch.equal(before[k], v) for k, v in forecaster.state_dict().items())


def test_paper_ambiguity_still_runs(problem):
    _, forecaster, _ = problem
    for estimator in ("pathwise", "ratio"):
        method, gen = _prepared(
            problem, ambiguity="paper", estimator=estimator, inner_epochs=2, trajectories=64
        )
        method.maximise(forecaster, gen)
        record = method.set.record(method.reference.segment_length)
        assert np.isfinite(record["J"]) and record["alpha"] >= 0.0
    assert 0.0 <= record["clip_frac"] <= 1.0


def test_fit_writes_declared_diagnostics_and_selection(problem):
    data, _, reference = problem
    forecaster = build_forecaster("mlp", 7, 1, seed=0, hidden=(8,))
    method = get_method(
        "threed",
        train=TrainConfig(epochs=2, batch_size=512),
        diffusion=reference,
        pool=32,
        minibatch=8,
        adversarial_samples=8,
        adversary_steps=1,
        selection="adversarial",
        keep_worst=2,
    )
    result = method.fit(data, TASK, forecaster)
    declared = set(SHARED_HISTORY) | set(METHODS["threed"].history)
    written = {k for row in result.history for k in row}
    assert written <= declared
    assert {"path_kl", "regret_raise", "disc_acc", "selection_score"} <= written
    # the discriminator judges once, at the end (the costly diagnostic is not per epoch)
    assert "disc_acc" not in result.history[0] and "w1" in result.history[0]
    assert 0.0 <= result.history[-1]["disc_acc"] <= 1.0
    assert 0.0 <= result.history[-1]["ref_disc_acc"] <= 1.0
    assert all(row["path_kl"] <= row["kl_budget"] for row in result.history)
    assert result.artifacts["selection"].startswith("adversarial regret")
    assert result.artifacts["worst_case"].shape == (2, reference.segment_length)
    assert result.artifacts["worst_case_reference"].shape == (2, reference.segment_length)


def test_level_direction_moves_levels_within_the_same_budget(problem):
    _, forecaster, _ = problem
    method, gen = _prepared(
        problem, budget=20.0 / 64, adversary_steps=8, adversary_lr=1e-2, level_scale=0.3
    )
    method.maximise(forecaster, gen)
    # The level factor moves, but the projection shrinks it along with θ − θ₀.
    assert float(method.set.level.detach().abs().max()) > 0.005
    assert _fresh_kl(method, seed=5) + float(method.set.divergence().detach()) <= method.budget


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"ambiguity": "paper", "level_scale": 0.1}, "level_scale applies to ambiguity='pathkl'"),
        ({"inner_epochs": 3}, "inner_epochs applies to ambiguity='paper' only"),
        ({"trajectories": 8}, "trajectories applies to ambiguity='paper' only"),
        ({"ambiguity": "paper", "kl_weight": 1}, "kl_weight applies to ambiguity='pathkl'"),
        ({"kl_weight": -1}, "method_params.threed: kl_weight: Input should be greater"),
        ({"budgett": 1}, "method_params.threed.budgett: unknown key"),
    ],
)
def test_a_knob_of_the_other_ambiguity_set_is_an_error_naming_it(params, message):
    with pytest.raises(ConfigError, match=message):
        get_method("threed", **params)


def test_each_set_takes_its_own_knobs_given_flat():
    paper = get_method("threed", ambiguity="paper", inner_epochs=3, trajectories=8)
    assert type(paper.set).__name__ == "PaperSet"
    assert (paper.params.knobs.inner_epochs, paper.params.knobs.trajectories) == (3, 8)
    pathkl = get_method("threed", kl_weight=0.5, tail_steps="none")
    assert pathkl.params.knobs.kl_weight == 0.5 and pathkl.params.knobs.tail_steps is None
    assert pathkl.params.flat()["kl_weight"] == 0.5


def test_a_reference_directory_is_checked_not_loaded_into_the_config(tmp_path):
    from drdfl.config import resolve_config
    from drdfl.diffusion.model import DiffusionModel

    DiffusionModel(get_preset("tiny").model, Scaler(0.0, 1.0)).save(tmp_path / "theta0")
    key = f"method_params.threed.diffusion={tmp_path / 'theta0'}"
    cfg = resolve_config("quick", overrides=["methods=threed", key])
    assert cfg.method_params["threed"]["diffusion"] == str(tmp_path / "theta0")
    method = get_method("threed", diffusion=str(tmp_path / "theta0"))
    assert method.params.diffusion == str(tmp_path / "theta0")  # weights load in fit
    assert method.t_prime == t_prime_for_noise_level(
        NoiseSchedule.build(
            get_preset("tiny").model.schedule,
            get_preset("tiny").model.T,
            get_preset("tiny").model.beta_start,
            get_preset("tiny").model.beta_end,
        ),
        0.5,
    )
    with pytest.raises(ConfigError, match=r"method_params.threed.diffusion: .*no diffusion model"):
        resolve_config(
            "quick", overrides=["methods=threed", f"method_params.threed.diffusion={tmp_path}"]
        )

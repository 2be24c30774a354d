import numpy as np
import pytest
from scipy import stats
from scipy.signal import lfilter

from drdfl.evaluation.intervals import block_bootstrap_ci, mean_ci
from drdfl.evaluation.metrics import (
    WindowScores,
    cvar,
    paper_normalized_regret,
    ratio_normalized_regret,
    summarize,
)


def test_paper_normalized_regret_is_a_mean_of_block_ratios():
    # Two blocks of two windows. Block 1: mean regret 2 / mean value 4 = 0.5 (a mean of
    # per-window ratios would give (1/1 + 3/7) / 2 = 0.71). Block 2: 1 / 2. The fifth
    # window is an incomplete block and is left out.
    regret = np.array([1.0, 3.0, 1.0, 1.0, 100.0])
    optimal = np.array([-1.0, -7.0, -2.0, -2.0, -1.0])
    assert paper_normalized_regret(regret, optimal, batch=2) == pytest.approx((0.5, 2, 0))
    assert ratio_normalized_regret(regret, optimal) == pytest.approx(106 / 13)


def test_paper_normalized_regret_counts_the_blocks_it_drops():
    regret = np.array([1.0, 1.0, 2.0, 2.0, 5.0, 5.0])
    optimal = np.array([0.0, 0.0, -4.0, -4.0, 1.0, 1.0])
    value, blocks, dropped = paper_normalized_regret(regret, optimal, batch=2)
    assert (value, blocks, dropped) == (pytest.approx(0.5), 3, 2)
    worthless = paper_normalized_regret(regret[:2], optimal[:2], batch=2)
    assert np.isnan(worthless.value) and (worthless.blocks, worthless.dropped) == (1, 1)


def test_paper_normalized_regret_is_nan_over_non_finite_windows():
    regret = np.array([1.0, np.nan, 2.0, 2.0])
    optimal = np.array([-1.0, -1.0, -4.0, -4.0])
    # the non-finite block must not be dropped silently, leaving a plausible 0.5
    assert np.isnan(paper_normalized_regret(regret, optimal, batch=2).value)
    assert np.isnan(paper_normalized_regret(np.ones(4), np.array([-1, np.inf, -1, -1.0]), 2).value)


def test_cvar_is_mean_of_upper_tail():
    v = np.arange(100.0)
    assert cvar(v, 0.9) == pytest.approx(np.mean(np.arange(90.0, 100.0)))
    assert cvar(v, 0.0) == pytest.approx(v.mean())
    with pytest.raises(ValueError):
        cvar(v, 1.0)


def test_block_bootstrap_matches_normal_theory_on_independent_values():
    rng = np.random.default_rng(1)
    v = rng.normal(3.0, 2.0, size=4000)
    lo, hi, block = block_bootstrap_ci(v, n_boot=1000, seed=0)
    se = v.std(ddof=1) / np.sqrt(v.size)
    assert lo < v.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert block <= 5
    assert block_bootstrap_ci(v, n_boot=200, seed=5) == block_bootstrap_ci(v, n_boot=200, seed=5)


def test_block_bootstrap_widens_for_autocorrelated_values():
    # AR(1) with φ = 0.6: the long-run standard error is sqrt((1 + φ) / (1 − φ)) = 2 times
    # the i.i.d. one, which a window-by-window bootstrap would report.
    rng = np.random.default_rng(2)
    noise = rng.normal(size=6000)
    v = lfilter([1.0], [1.0, -0.6], noise)
    lo, hi, block = block_bootstrap_ci(v, n_boot=1000, seed=0)
    iid = 2 * 1.96 * v.std(ddof=1) / np.sqrt(v.size)
    assert block > 5
    assert (hi - lo) / iid == pytest.approx(2.0, rel=0.25)


def test_block_bootstrap_degenerate_inputs():
    assert block_bootstrap_ci(np.full(50, 3.0)) == (3.0, 3.0, 1)
    lo, hi, block = block_bootstrap_ci(np.array([1.0, np.nan, 2.0]))
    assert np.isnan(lo) and np.isnan(hi) and block == 0
    assert np.isnan(block_bootstrap_ci(np.array([1.0]))[0])


def test_summarize_reports_blocks_and_non_finite_windows():
    n = 200
    regret = np.linspace(0.0, 1.0, n)
    optimal = -np.ones(n)
    optimal[:64] = 0.0  # the first block earns nothing
    scores = WindowScores(
        start=np.arange(n),
        prediction=np.zeros((n, 1)),
        truth=np.zeros((n, 1)),
        decision=np.zeros((n, 1)),
        regret=regret,
        optimal_cost=optimal,
        sq_err=np.zeros(n),
    )
    m = summarize(scores, n_boot=200)
    assert (m["normalized_regret_blocks"], m["normalized_regret_dropped"]) == (3.0, 1.0)
    assert m["nonfinite_windows"] == 0.0 and m["regret_ci_block"] >= 1
    assert m["regret_ci_low"] < m["regret"] < m["regret_ci_high"]
    regret[5] = np.inf
    bad = summarize(scores, n_boot=200)
    assert bad["nonfinite_windows"] == 1.0
    assert np.isnan(bad["normalized_regret"]) and np.isnan(bad["regret_ci_low"])


def test_mean_ci_student_t():
    v = np.array([1.0, 2.0, 4.0])
    m, half = mean_ci(v)
    assert m == pytest.approx(7 / 3)
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * v.std(ddof=1) / np.sqrt(3))
    assert np.isnan(mean_ci(np.array([1.0]))[1])


def test_block_bootstrap_agrees_with_arch_on_autocorrelated_values():
    from arch.bootstrap import MovingBlockBootstrap

    rng = np.random.default_rng(3)
    v = np.convolve(rng.gamma(2.0, 1.0, 5000), np.ones(20) / 20, mode="same")
    lo, hi, block = block_bootstrap_ci(v, n_boot=4000, seed=1)
    reference = MovingBlockBootstrap(block, v, seed=np.random.default_rng(2))
    alo, ahi = reference.conf_int(np.mean, reps=4000, method="percentile", size=0.95)
    assert block > 20  # the automatic block spans the smoothing
    assert abs((hi - lo) / (ahi[0] - alo[0]) - 1) < 0.08
    assert abs((lo + hi) / 2 - (alo[0] + ahi[0]) / 2) < 0.1 * (hi - lo)

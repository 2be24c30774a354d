import numpy as np
import pytest
from scipy import stats

from drdfl.evaluation.metrics import (
    bootstrap_ci,
    cvar,
    mean_ci,
    paper_normalized_regret,
    ratio_normalized_regret,
)


def test_paper_normalized_regret_is_a_mean_of_block_ratios():
    # Two blocks of two windows. Block 1: mean regret 2 / mean value 4 = 0.5 (a mean of
    # per-window ratios would give (1/1 + 3/7) / 2 = 0.71). Block 2: 1 / 2. The fifth
    # window is an incomplete block and is dropped.
    regret = np.array([1.0, 3.0, 1.0, 1.0, 100.0])
    optimal = np.array([-1.0, -7.0, -2.0, -2.0, -1.0])
    assert paper_normalized_regret(regret, optimal, batch=2) == pytest.approx(0.5)
    assert ratio_normalized_regret(regret, optimal) == pytest.approx(106 / 13)


def test_paper_normalized_regret_skips_worthless_blocks():
    regret = np.array([1.0, 1.0, 2.0, 2.0])
    optimal = np.array([0.0, 0.0, -4.0, -4.0])
    assert paper_normalized_regret(regret, optimal, batch=2) == pytest.approx(0.5)
    assert np.isnan(paper_normalized_regret(regret[:2], optimal[:2], batch=2))


def test_cvar_is_mean_of_upper_tail():
    v = np.arange(100.0)
    assert cvar(v, 0.9) == pytest.approx(np.mean(np.arange(90.0, 100.0)))
    assert cvar(v, 0.0) == pytest.approx(v.mean())
    with pytest.raises(ValueError):
        cvar(v, 1.0)


def test_bootstrap_ci_matches_normal_theory():
    rng = np.random.default_rng(1)
    v = rng.normal(3.0, 2.0, size=4000)
    lo, hi = bootstrap_ci(v, n_boot=2000, seed=0)
    se = v.std(ddof=1) / np.sqrt(v.size)
    assert lo < v.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert bootstrap_ci(v, n_boot=200, seed=5) == bootstrap_ci(v, n_boot=200, seed=5)


def test_mean_ci_student_t():
    v = np.array([1.0, 2.0, 4.0])
    m, half = mean_ci(v)
    assert m == pytest.approx(7 / 3)
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * v.std(ddof=1) / np.sqrt(3))
    assert np.isnan(mean_ci(np.array([1.0]))[1])

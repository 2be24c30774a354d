import itertools

import numpy as np
import pytest
import torch

from drdfl.data.series import Series
from drdfl.data.windows import Scaler, chronological_split, make_windows, split_series
from drdfl.errors import DataError


def test_make_windows_values_and_starts():
    v = np.arange(10, dtype=float)
    w = make_windows(v, window=3, horizon=2)
    assert len(w) == 6
    np.testing.assert_array_equal(w.x[0], [0, 1, 2])
    np.testing.assert_array_equal(w.y[0], [3, 4])
    np.testing.assert_array_equal(w.x[-1], [5, 6, 7])
    np.testing.assert_array_equal(w.y[-1], [8, 9])
    np.testing.assert_array_equal(w.start, np.arange(6))
    w2 = make_windows(v, window=3, horizon=1, stride=3)
    np.testing.assert_array_equal(w2.start, [0, 3, 6])
    np.testing.assert_array_equal(w2.y[:, 0], [3, 6, 9])


def test_make_windows_too_short_names_series():
    with pytest.raises(DataError, match="myseries.*cannot hold one window"):
        make_windows(np.ones(5), window=7, horizon=1, name="myseries")


def test_scaler_roundtrip_numpy_and_torch():
    s = Scaler.fit(np.array([2.0, 4.0, 10.0]))
    assert (s.lo, s.hi) == (2.0, 10.0)
    np.testing.assert_allclose(s.transform(np.array([2.0, 6.0, 10.0])), [0.0, 0.5, 1.0])
    t = torch.tensor([0.25], requires_grad=True)
    out = s.inverse_transform(t)
    out.backward()
    assert out.item() == pytest.approx(4.0)
    assert t.grad.item() == pytest.approx(8.0)
    assert Scaler.from_dict(s.to_dict()) == s


def test_chronological_split_gap_and_order():
    parts = chronological_split(1000, (0.7, 0.15, 0.15), gap=7)
    assert parts[0][0] == 0
    for (a0, b0), (a1, b1) in itertools.pairwise(parts):
        assert a1 - b0 == 7
        assert a0 < b0 <= a1 < b1
    assert parts[-1][1] == 1000
    assert parts[0][1] - parts[0][0] == pytest.approx(0.7 * (1000 - 14), abs=1)


def test_split_series_keeps_time():
    import pandas as pd

    s = Series(np.arange(100.0), "x", 5.0, start=pd.Timestamp("2024-01-01"))
    tr, va, te = split_series(s, (0.5, 0.25, 0.25))
    assert len(tr) + len(va) + len(te) == 100
    assert va.start == pd.Timestamp("2024-01-01") + pd.Timedelta(seconds=5 * 50)

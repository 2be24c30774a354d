"""The report built from a synthetic but complete run directory with known numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from drdfl.errors import DataError
from drdfl.evaluation.report import build_report, load_outputs, print_summary

TESTS = ["chat (test)", "code", "chat→code"]
W_DISTANCE = {"chat (test)": 0.0123, "code": 0.201, "chat→code": 0.117}
# normalized regret [seed][test set] per method
NR = {
    "mse": [[0.10, 0.40, 0.30], [0.12, 0.44, 0.31]],
    "dfl": [[0.08, 0.35, 0.28], [0.09, 0.33, 0.27]],
    "threed": [[0.09, 0.20, 0.18], [0.11, 0.24, 0.17]],
}
BEST = {"chat (test)": "dfl", "code": "threed", "chat→code": "threed"}
CORRUPT = {"gaussian": 0.1, "perlin": 0.05, "cutout": 0.005}
SEEDS = (0, 1)


def _metrics(nr: float, w: float) -> dict[str, float]:
    return {
        "normalized_regret": nr,
        "normalized_regret_ratio": nr * 0.9,
        "regret": nr * 1e4,
        "regret_ci_low": nr * 0.9e4,
        "regret_ci_high": nr * 1.1e4,
        "mse": nr / 10,
        "regret_cvar90": nr * 3e4,
        "windows": 500.0,
        "w_distance": w,
    }


def _rows(method: str, seed: int, suite: str, test: str, nr: float, w: float) -> list[dict]:
    return [
        {"method": method, "seed": seed, "suite": suite, "test_set": test, "metric": k, "value": v}
        for k, v in _metrics(nr, w).items()
    ]


def corruption_nr(method: str, seed: int, kind: str, severity: int) -> float:
    """A method's corrupted-set regret grows with severity; threed grows slowest."""
    slope = {"mse": 0.5, "dfl": 0.4, "threed": 0.2}[method]
    return NR[method][seed][0] * (1 + slope * severity) + 0.01 * list(CORRUPT).index(kind)


def write_run(out: Path, optional: bool = True) -> None:
    """A run directory: main suite, and with ``optional`` everything else a run writes."""
    rows: list[dict] = []
    for method, per_seed in NR.items():
        for seed in SEEDS:
            for j, test in enumerate(TESTS):
                rows += _rows(method, seed, "synthetic", test, per_seed[seed][j], W_DISTANCE[test])
    if optional:
        for method in NR:
            for seed in SEEDS:
                for kind, level in CORRUPT.items():
                    for severity in (1, 2):
                        nr = corruption_nr(method, seed, kind, severity)
                        name = f"{kind} {level * severity:.3g}"
                        rows += _rows(method, seed, "corruptions", name, nr, 0.05 * severity)
                for j, test in enumerate(TESTS):
                    nr = NR[method][seed][j] * 1.1
                    rows += _rows(method, seed, "skyline", test, nr, W_DISTANCE[test])
                    if method == "dfl":
                        rows += _rows("skyline", seed, "skyline", test, nr / 3, W_DISTANCE[test])
        # the ablation has one seed only; the budget sweep two
        for j, test in enumerate(TESTS):
            rows += _rows("threed-mse", 0, "synthetic", test, 0.3 + 0.01 * j, W_DISTANCE[test])
            for k, eps in enumerate((0.01, 0.02, 0.04)):
                for seed in SEEDS:
                    nr = 0.25 - 0.03 * k + 0.02 * j + 0.01 * seed
                    rows += _rows(f"threed@{eps}", seed, "synthetic", test, nr, W_DISTANCE[test])
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    if not optional:
        return
    epochs = np.arange(6)
    history = []
    for i, method in enumerate(NR):
        for seed in SEEDS:
            frame = pd.DataFrame(
                {
                    "method": method,
                    "seed": seed,
                    "epoch": epochs,
                    "train_loss": (1 + i) * np.exp(-epochs / 3) + 0.01 * seed,
                    "val_regret": 0.3 * np.exp(-epochs / 4) + 0.05 * i + 0.01 * seed,
                    "time_s": 0.5 * (epochs + 1),
                }
            )
            if method == "threed":
                frame["alpha"] = 1 + 0.1 * epochs
                frame["J"] = 0.2 + 0.05 * np.sqrt(epochs)
                frame["clip_frac"] = 0.5 * np.exp(-epochs / 2)
                frame["adv_regret"] = 0.4 - 0.02 * epochs
            history.append(frame)
    pd.concat(history).to_csv(out / "histories.csv", index=False)
    timings = [
        {"method": m, "seed": s, "stage": stage, "seconds": sec * (1 + s * 0.1)}
        for m, factor in (("mse", 1.0), ("dfl", 2.0), ("threed", 5.0))
        for s in SEEDS
        for stage, sec in (("diffusion", 30.0 if m == "threed" else 0.0), ("train", 10 * factor))
    ]
    pd.DataFrame(timings).to_csv(out / "timings.csv", index=False)
    rng = np.random.default_rng(0)
    t = np.linspace(0, 2 * np.pi, 24)
    real = 0.5 + 0.3 * np.sin(t + rng.uniform(0, 6, (40, 1))) + 0.05 * rng.normal(size=(40, 24))
    generated = real + 0.05 * rng.normal(size=real.shape)
    np.savez(out / "samples.npz", real=real, generated=generated, worst_case=real[:8] * 1.3)
    (out / "config.toml").write_text('seeds = 2\nmethods = ["mse", "dfl", "threed"]\n')
    meta = {
        "notes": ["The paper's in-distribution test set overlaps its training data."],
        "versions": {"drdfl": "0.1.0", "torch": "2.x"},
        "profile": "quick",
    }
    (out / "results.json").write_text(json.dumps(meta))


def parse_table(markdown: str, heading: str) -> dict[str, dict[str, tuple[str, bool]]]:
    """The first markdown table after ``heading``: row -> column -> (cell text, bold)."""
    lines = markdown[markdown.index(heading) :].splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    header = rows[0]
    return {
        cells[0]: {
            h: (c.strip("*"), c.startswith("**")) for h, c in zip(header, cells, strict=True)
        }
        for cells in rows[2:]
    }


def mean_half(values: np.ndarray) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)


def assert_cell(text: str, expected: tuple[float, float]) -> None:
    match = re.fullmatch(r"(-?[\d.]+) ± ([\d.]+)", text)
    assert match, text
    decimals = len(match[1].split(".")[1])
    tolerance = 0.5 * 10.0**-decimals + 1e-12
    assert float(match[1]) == pytest.approx(expected[0], abs=tolerance)
    assert float(match[2]) == pytest.approx(expected[1], abs=tolerance)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path], str]:
    out = tmp_path_factory.mktemp("run")
    write_run(out)
    written = build_report(out)
    return out, written, (out / "report.md").read_text(encoding="utf-8")


MAIN = "Normalized regret on the `synthetic` suite"


def test_main_table_cells_are_mean_and_t_interval_over_seeds(built):
    _, _, md = built
    table = parse_table(md, MAIN)
    assert list(table) == [*TESTS, "average", "maximum"]
    nr = {m: np.array(v) for m, v in NR.items()}
    for method, values in nr.items():
        for j, test in enumerate(TESTS):
            assert_cell(table[test][method][0], mean_half(values[:, j]))
        assert_cell(table["average"][method][0], mean_half(values.mean(axis=1)))
        assert_cell(table["maximum"][method][0], mean_half(values.max(axis=1)))
    assert table["code"]["dfl"][0] == "0.340 ± 0.127"
    assert table["code"]["W-dist."][0] == "0.201"
    # the ablation ran one seed: its mean with the seed count, no interval
    assert table["code"]["threed-mse"][0] == "0.310 (n=1)"
    # budget-sweep entries have their own section, not a column here
    assert not any(k.startswith("threed@") for k in table["code"])


def test_best_of_each_row_is_bold_and_unique(built):
    _, _, md = built
    table = parse_table(md, MAIN)
    expected = {**BEST, "average": "threed", "maximum": "threed"}
    for row, method in expected.items():
        bold = [col for col, (_, is_bold) in table[row].items() if is_bold]
        assert bold == [method], (row, bold)


def test_skyline_is_shown_but_not_marked_best(built):
    _, _, md = built
    table = parse_table(md, "Skyline: how much")
    for j, test in enumerate(TESTS):
        sky = np.array([NR["dfl"][s][j] * 1.1 / 3 for s in SEEDS])
        assert_cell(table[test]["skyline"][0], mean_half(sky))
        assert not table[test]["skyline"][1]
        assert table[test][BEST[test]][1]


def test_corruptions_are_divided_by_dfl_of_the_same_seed(built):
    _, _, md = built
    table = parse_table(md, "Regret under corruptions")
    assert "dfl" not in table["gaussian 0.1"]
    for kind, level in CORRUPT.items():
        for method in ("mse", "threed"):
            ratio = [
                corruption_nr(method, s, kind, 1) / corruption_nr("dfl", s, kind, 1) for s in SEEDS
            ]
            assert_cell(table[f"{kind} {level:.3g}"][method][0], mean_half(np.array(ratio)))
        assert table[f"{kind} {level:.3g}"]["threed"][1]


def test_html_is_self_contained_and_figures_are_valid_pngs(built):
    out, written, md = built
    figures = {k for k in written if k.startswith("figures/")}
    assert figures == {
        f"figures/{name}.png"
        for name in (
            "corruption_vs_dfl",
            "corruption_severity",
            "threed_dfl_vs_mse",
            "budget_sweep",
            "generated_vs_real",
            "worst_case",
            "validation_regret",
            "train_loss",
            "threed_dynamics",
            "wall_time",
        )
    }
    for name in figures:
        data = written[name].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 10_000
        assert f"]({name})" in md
    page = written["report.html"].read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == len(figures)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<link" not in page and "<script" not in page
    assert '<td class="num best"><strong>0.220 ± 0.254</strong></td>' in page  # threed, code
    assert "overlaps its training data" in page and "methods = [" in page
    assert not (out / "report.md.tmp").exists()


def test_wall_time_table_is_mean_seconds_per_stage(built):
    _, _, md = built
    table = parse_table(md, "Seconds per seed")
    # threed: diffusion 30 s, train 50 s, seed 1 takes 10 % longer
    assert table["threed"]["diffusion"][0] == "31.5"
    assert table["threed"]["train"][0] == "52.5"
    assert table["threed"]["total"][0] == "84.0"
    assert table["threed"]["seeds"][0] == "2"


def test_missing_optional_inputs_skip_their_sections(tmp_path):
    write_run(tmp_path, optional=False)
    written = build_report(tmp_path, title="Only results")
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# Only results")
    assert set(written) == {"report.md", "report.html"}
    for section in (
        "Skyline skipped",
        "Corruptions skipped",
        "Ablation skipped",
        "Budget sweep skipped",
        "Segments skipped",
        "Training curves skipped",
        "Wall time skipped",
        "Notes skipped",
    ):
        assert section in md, section
    assert parse_table(md, MAIN)["code"]["threed"][0] == "0.220 ± 0.254"


def test_gaps_show_as_dashes_and_seed_counts(tmp_path):
    write_run(tmp_path, optional=False)
    frame = pd.read_csv(tmp_path / "results.csv")
    gone = ((frame["method"] == "dfl") & (frame["test_set"] == "code")) | (
        (frame["method"] == "mse") & (frame["seed"] == 1)
    )
    corrupted = frame[frame["test_set"] == "code"].assign(
        suite="corruptions", test_set="perlin 0.05"
    )
    pd.concat([frame[~gone], corrupted[corrupted["method"] != "dfl"]]).to_csv(
        tmp_path / "results.csv", index=False
    )
    build_report(tmp_path)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    table = parse_table(md, MAIN)
    # a seed without every test set has no average or maximum
    assert [table[r]["dfl"][0] for r in ("code", "average", "maximum")] == ["–"] * 3
    assert_cell(table["chat→code"]["dfl"][0], mean_half(np.array([0.28, 0.27])))
    assert table["code"]["mse"][0] == "0.400 (n=1)"
    assert table["average"]["mse"][0] == f"{np.mean(NR['mse'][0]):.3f} (n=1)"
    assert table["code"]["threed"][1] and table["average"]["threed"][1]
    assert "Relative regret skipped: no `dfl` results" in md


def test_bad_inputs_raise_data_error_naming_the_file(tmp_path):
    with pytest.raises(DataError, match="results.csv: not found"):
        build_report(tmp_path)
    write_run(tmp_path, optional=False)
    frame = pd.read_csv(tmp_path / "results.csv", dtype={"value": str})
    frame.loc[5, "value"] = "oops"
    frame.to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(DataError, match=r"results.csv, line 7: column 'value' is 'oops'"):
        load_outputs(tmp_path)
    frame.drop(columns="metric").to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(DataError, match="missing column"):
        load_outputs(tmp_path)


def test_print_summary_is_one_line_per_method_with_best_marked(built):
    out, _, _ = built
    lines = {ln.split("  ")[0].strip(): ln for ln in print_summary(out).splitlines()[1:]}
    assert lines["method"].split() == [
        "method",
        "chat",
        "(test)",
        "code",
        "chat→code",
        "average",
        "maximum",
    ]
    assert lines["W-dist."].split()[1:] == ["0.0123", "0.201", "0.117"]
    # best per column: dfl on the in-distribution set, threed on the rest
    assert lines["dfl"].count("*") == 1 and "0.340 ± 0.127  " in lines["dfl"]
    assert lines["threed"].count("*") == 4 and "0.220 ± 0.254 *" in lines["threed"]
    assert "*" not in lines["mse"]
    assert lines["threed-mse"].count("(n=1)") == 5

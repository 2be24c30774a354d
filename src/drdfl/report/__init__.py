"""The report of a finished run, built only from the files in its output directory.

:func:`write_report` reads the run (:mod:`drdfl.report.outputs`, which refuses an
incomplete one), builds the sections (one module per theme: overview, verdict, regret,
robustness, adversary, training, and the backtest in operate), renders them once as
Markdown and makes the HTML from that Markdown (:mod:`drdfl.report.render`).
:func:`summary_text` is the main table for a terminal. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drdfl._io import write_text
from drdfl.report.outputs import RunOutputs, load_run

__all__ = ["RunOutputs", "load_run", "summary_text", "write_report"]


def write_report(out_dir: str | Path, title: str | None = None) -> dict[str, Path]:
    """Write ``report.md``, a self-contained ``report.html`` and ``figures/*.png`` into
    ``out_dir`` from the run's outputs there.

    Raises :class:`~drdfl.errors.DataError` (naming the file) before writing anything when
    the outputs are unreadable or incomplete. Returns every written file keyed by its
    path relative to ``out_dir``.
    """
    from drdfl.report.adversary import adversary, samples
    from drdfl.report.blocks import FigureWriter
    from drdfl.report.operate import backtest_section
    from drdfl.report.overview import notes, overview, quality_gate, test_sets
    from drdfl.report.regret import main_tables, skyline
    from drdfl.report.render import html_page, markdown
    from drdfl.report.robustness import ablation, budget, corruptions
    from drdfl.report.tables import main_suites
    from drdfl.report.training import training, wall_time
    from drdfl.report.verdict import verdict

    run = load_run(out_dir)
    out = run.out_dir
    profile = run.meta.get("profile")
    title = title or ("drdfl report" + (f": {profile} profile" if profile else ""))
    suites = main_suites(run.results)
    suite = suites[0] if suites else None
    figs = FigureWriter(out)
    blocks = [
        *overview(run, title),
        *verdict(run),
        *quality_gate(run),
        *test_sets(run),
        *main_tables(run),
        *skyline(run),
        *backtest_section(out, figs.png),
        *corruptions(run, figs),
        *ablation(run, figs, suite),
        *budget(run, figs, suite),
        *adversary(run),
        *samples(run, figs),
        *training(run, figs),
        *wall_time(run, figs),
        *notes(run),
    ]
    text = markdown(blocks)
    write_text(out / "report.md", text)
    write_text(out / "report.html", html_page(text, title, figs.png))
    return {"report.md": out / "report.md", "report.html": out / "report.html", **figs.written}


def summary_text(out_dir: str | Path) -> str:
    """The main suite's normalized-regret table as plain text for a terminal.

    One line per method, one column per test set, a ``W-dist.`` line first; ``*`` marks
    the best mean of each column, ``†`` a trained method worse than the best untrained
    rule (the last line). Runs scored online get a second table.
    """
    from drdfl.methods.labels import ONLINE_SUFFIX
    from drdfl.report.blocks import table_block
    from drdfl.report.tables import is_untrained, main_suites, plot_methods, seed_table

    run = load_run(out_dir)
    suites = main_suites(run.results)
    if not suites:
        return "no main-suite results"
    in_suite = run.results[run.results["suite"] == suites[0]]
    methods = plot_methods(in_suite)
    offline = [m for m in methods if not m.endswith(ONLINE_SUFFIX)]
    online = [m for m in methods if m.endswith(ONLINE_SUFFIX)]
    w = in_suite[in_suite["metric"] == "w_distance"].groupby("test_set")["value"].mean()
    head = (
        f"normalized regret on `{suites[0]}` (mean ± 95 % CI over seeds; * best per column; "
        "† worse than the best untrained rule, last line)"
    )
    parts = [head, _text_table(table_block(seed_table(run.results, suites[0], offline), run), w)]
    if online:
        rules = [m for m in offline if is_untrained(m)]
        table = table_block(seed_table(run.results, suites[0], [*rules, *online]), run)
        parts += ["", "with online recalibration:", _text_table(table, w)]
    return "\n".join(parts)


def _text_table(block: Any, w: Any) -> str:
    w_line = ["W-dist.", *(f"{w[c]:.3g}" if c in w else "" for c in block.header[1:])]
    # Two trailing characters on every cell keep the numbers aligned, marked or not.
    rows = [
        [c + (" *" if (i, j) in block.best else "  ") if j else c for j, c in enumerate(row)]
        for i, row in enumerate(block.rows)
    ]
    lines = [block.header, [c + "  " if j else c for j, c in enumerate(w_line)], *rows]
    widths = [max(len(line[k]) for line in lines) for k in range(len(block.header))]
    text = [
        "  ".join(
            c.ljust(width) if k == 0 else c.rjust(width)
            for k, (c, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    ]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)

"""The report's sections on the run itself: what ran (overview), the reference model's
quality gate, the test sets, and the notes and configuration at the end."""

from __future__ import annotations

import numpy as np

from drdfl.methods.labels import read_label
from drdfl.report.blocks import GATE_FLAG, failed_gate_seeds, flagged
from drdfl.report.operate import decision_line
from drdfl.report.outputs import RunOutputs, failed_units
from drdfl.report.render import Block, Bullets, Code, Heading, Para, Table, skipped
from drdfl.report.tables import NA, main_suites, order_methods, plot_methods


def overview(run: RunOutputs, title: str) -> list[Block]:
    """The title and the run's facts: profile, suite, methods, seeds, code, failures, the
    data's warnings."""
    r = run.results
    suites = main_suites(r)
    methods = plot_methods(r)
    budgets = sorted(e for m in r["method"].unique() if (e := read_label(m).budget) is not None)
    facts = [
        f"main suite: `{suites[0]}`" if suites else "no main suite",
        f"methods ({len(methods)}): " + ", ".join(f"`{m}`" for m in methods),
        "seeds: " + ", ".join(str(s) for s in sorted(r["seed"].unique())),
    ]
    if budgets:
        facts.append("3D-Learning budget sweep, ε: " + ", ".join(f"{e:g}" for e in budgets))
    decided = decision_line(run.meta.get("config"))
    if decided:
        facts.append(decided)
    profile = run.meta.get("profile")
    if profile:
        facts.insert(0, f"profile: `{profile}`")
    git = run.meta.get("code")
    if isinstance(git, dict) and git.get("commit"):
        dirty = " (uncommitted changes)" if git.get("dirty") else ""
        facts.append(f"code: commit `{str(git['commit'])[:12]}`{dirty}")
    failed = failed_units(run)
    if failed:
        facts.append("**failed or not run** (no results): " + ", ".join(f"`{f}`" for f in failed))
    # The data's own warnings (e.g. a constant training series) head the report.
    notes = run.meta.get("notes")
    for note in notes if isinstance(notes, list) else []:
        if str(note).startswith("Warning: "):
            facts.append(f"**warning**: {str(note).removeprefix('Warning: ')}")
    return [Heading(title, 1), Bullets(facts)]


def quality_gate(run: RunOutputs) -> list[Block]:
    """Each seed's reference-model verdict, criterion by criterion, and what rests on a failed
    one."""
    blocks: list[Block] = [Heading("Reference model quality gate")]
    if not run.gates:
        return [*blocks, skipped("Quality gate", "no `reference/s<seed>/quality.json`")]
    table = Table(["seed", "status", "criterion", "value", "reference", "accepted", "pass"], [])
    for seed, gate in run.gates.items():
        status = gate.status + (f" ({gate.sampler})" if gate.sampler else "")
        if not gate.criteria:
            table.rows.append([str(seed), status, gate.reason or "", "", "", "", ""])
        for k, c in enumerate(gate.criteria):
            table.rows.append(
                [
                    str(seed) if k == 0 else "",
                    status if k == 0 else "",
                    c.name,
                    f"{c.value:.4g}",
                    f"{c.reference:.4g}",
                    f"{c.low:.4g} – {c.high:.4g}",
                    "yes" if c.passed else "no",
                ]
            )
            if not c.passed:
                table.best.add((len(table.rows) - 1, 6))
    table.text_columns = 3
    blocks.append(table)
    blocks.append(
        Para(
            "Reference: the statistic on the held-out part of the training series (for the "
            "discriminator, its accuracy at telling held-out from fitted real data). "
            "Accepted: the range the generated value must fall in."
        )
    )
    for seed, gate in run.gates.items():
        if gate.status == "unjudged":
            blocks.append(Para(f"Seed {seed}: not judged — {gate.reason or 'no reason given'}."))
    failed = failed_gate_seeds(run)
    if failed:
        dependent = [m for m in order_methods(run.results["method"]) if flagged(run, m)]
        names = ", ".join(f"`{m}`" for m in dependent) or "no method of this run"
        blocks.append(
            Para(
                f"**{GATE_FLAG} The reference model θ₀ failed its gate for seed(s) "
                f"{', '.join(map(str, failed))}.** Results that start from it ({names}) are "
                f"marked {GATE_FLAG} in every table: they rest on a θ₀ that is not a faithful "
                "model of the data."
            )
        )
    return blocks


def test_sets(run: RunOutputs) -> list[Block]:
    """Each test set of the main suites: windows, distance from training data, note."""
    suites = main_suites(run.results)
    if not suites:
        return []
    r = run.results[run.results["suite"].isin(suites)]
    notes = {
        str(t.get("name")): str(t.get("note") or "")
        for t in run.meta.get("test_sets") or []
        if isinstance(t, dict)
    }
    table = Table(["test set", "suite", "note", "windows", "W-dist."], [], text_columns=3)
    for (suite, test), part in r.groupby(["suite", "test_set"], sort=False):
        metric = part.groupby("metric")["value"].mean()
        w, windows = metric.get("w_distance", np.nan), metric.get("windows", np.nan)
        table.rows.append(
            [
                str(test),
                str(suite),
                notes.get(str(test), ""),
                f"{windows:.0f}" if np.isfinite(windows) else NA,
                f"{w:.3g}" if np.isfinite(w) else NA,
            ]
        )
    return [
        Heading("Test sets"),
        Para(
            "W-dist.: Wasserstein-1 distance between the test set's and the training data's "
            "marginal distributions (0: in distribution)."
        ),
        table,
    ]


def notes(run: RunOutputs) -> list[Block]:
    """The run's notes, the versions that produced it and its resolved configuration."""
    blocks: list[Block] = [Heading("Notes and configuration")]
    items = run.meta.get("notes")
    if isinstance(items, list) and items:
        blocks.append(Bullets([str(n) for n in items]))
    versions = run.meta.get("versions")
    if isinstance(versions, dict) and versions:
        blocks.append(Para("Versions: " + ", ".join(f"{k} `{v}`" for k, v in versions.items())))
    if run.config_text:
        blocks += [Para("Resolved configuration (`config.toml`):"), Code(run.config_text, "toml")]
    if len(blocks) == 1:
        blocks.append(skipped("Notes", "no `results.json` notes and no `config.toml`"))
    return blocks


__all__ = ["notes", "overview", "quality_gate", "test_sets"]

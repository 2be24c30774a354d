"""The report's sections on 3D-Learning's adversary: its budget, regret raise and realism,
and the real, generated and worst-case segments."""

from __future__ import annotations

import numpy as np

from drdfl.methods.labels import read_label
from drdfl.records import DISC_MARGIN, SAMPLE_SETS
from drdfl.report import figures
from drdfl.report.blocks import FigureWriter
from drdfl.report.outputs import RunOutputs
from drdfl.report.render import Block, Bullets, Heading, Para, Table, skipped
from drdfl.report.tables import number, order_methods

#: epochs at the end of training whose adversary diagnostics are averaged (one epoch's
#: crop discriminator judges only a few dozen segments)
ADVERSARY_EPOCHS = 3


def adversary(run: RunOutputs) -> list[Block]:
    """Per 3D-Learning run: its budget, the path KL, the regret raise and whether the
    adversarial set stayed realistic (the crop discriminator no better at telling it from
    real data than θ₀'s tails, within the quality gate's margin)."""
    blocks: list[Block] = [Heading("3D-Learning's adversary: budget, regret raise, realism")]
    h = run.histories
    labels = []
    if h is not None and {"disc_acc", "ref_disc_acc"} <= set(h.columns):
        judged = set(h.loc[h["disc_acc"].notna(), "method"])
        labels = [
            m
            for m in order_methods(h["method"])
            if read_label(m).method == "threed" and m in judged
        ]
    if not labels:
        return [*blocks, skipped("Adversary", "no 3D-Learning diagnostics in `histories.csv`")]
    margin = DISC_MARGIN
    columns = ["kl_budget", "path_kl", "regret_raise", "disc_acc", "ref_disc_acc", "floor_frac"]
    table = Table(["run", *columns, "realistic"], [])
    unreal = []
    for label in labels:
        rows = h[h["method"] == label].sort_values("epoch")
        last = rows.groupby("seed").tail(ADVERSARY_EPOCHS)
        means = {c: float(last[c].mean()) if c in last else float("nan") for c in columns}
        gap = means["disc_acc"] - means["ref_disc_acc"]
        realistic = bool(gap <= margin)
        if not realistic:
            unreal.append(label)
            table.best.add((len(table.rows), len(columns) + 1))
        cells = [number(means[c], 3) for c in columns]
        table.rows.append([label, *cells, "yes" if realistic else "no"])
    table.text_columns = 1
    blocks.append(
        Para(
            f"Means over the last {ADVERSARY_EPOCHS} epochs and the seeds. `path_kl` and "
            "`kl_budget` in nats per segment slot; `regret_raise`: the forecaster's regret on "
            "the adversarial tails over θ₀'s tails from the same states and noise; "
            "`disc_acc`/`ref_disc_acc`: a crop discriminator telling the adversarial "
            "(θ₀'s) tails from real training segments (0.5: alike), judged on the epochs "
            "that ran it (by default once, on the final adversary). Realistic: `disc_acc` at "
            f"most `ref_disc_acc` + {margin:g}, the quality gate's margin."
        )
    )
    blocks.append(table)
    if unreal:
        names = ", ".join(f"`{m}`" for m in unreal)
        blocks.append(
            Para(
                f"**The adversarial set of {names} is not realistic**: the discriminator tells "
                "it from real data better than θ₀'s samples, so its worst case lies off the "
                "data; a smaller `method_params.threed.budget` keeps it closer."
            )
        )
    return blocks


def samples(run: RunOutputs, figs: FigureWriter) -> list[Block]:
    """Real, generated and worst-case segments: figures, statistics, the share below the
    training minimum."""
    blocks: list[Block] = [Heading("Generated, real and worst-case segments")]
    s = run.samples
    if not s:
        return [*blocks, skipped("Segments", "no `samples.npz`")]
    blocks.append(Bullets([f"`{k}`: {SAMPLE_SETS[k]}" for k in s]))
    if "real" in s and "generated" in s:
        blocks.append(
            figs.add(
                "generated_vs_real",
                "Real normalized training segments and segments of the reference diffusion "
                "model; right: marginal distributions of all values.",
                figures.generated_vs_real,
                s["real"],
                s["generated"],
            )
        )
    else:
        blocks.append(skipped("Generated vs. real", "`samples.npz` lacks `real` or `generated`"))
    if "worst_case" in s:
        blocks.append(
            figs.add(
                "worst_case",
                "The worst-case segments 3D-Learning found in its last epoch, over the 5–95 % "
                "band of real segments; right: marginal distributions"
                + (" (with the same draw, adversary off)." if "worst_case_off" in s else "."),
                figures.worst_case_segments,
                s.get("real"),
                s["worst_case"],
                *(
                    (s["worst_case_off"], "adversary off")
                    if "worst_case_off" in s
                    else (s.get("generated"), "generated")
                ),
            )
        )
    else:
        blocks.append(skipped("Worst-case segments", "`samples.npz` has no `worst_case`"))
    blocks.append(_segment_stats(s))
    blocks.append(_below_training_minimum(s))
    return blocks


def _segment_stats(samples: dict[str, np.ndarray]) -> Table:
    """Count, length, marginal moments and lag-1 autocorrelation of each sample set."""
    table = Table(["segments", "n", "length", "mean", "std", "min", "max", "lag-1 autocorr."], [])
    for name, x in samples.items():
        centred = x - x.mean(axis=1, keepdims=True)
        denom = (centred**2).sum(axis=1)
        num = (centred[:, 1:] * centred[:, :-1]).sum(axis=1)
        valid = denom > 0
        ac = float((num[valid] / denom[valid]).mean()) if valid.any() else float("nan")
        stats = [x.mean(), x.std(), x.min(), x.max(), ac]
        table.rows.append([name, str(x.shape[0]), str(x.shape[1]), *(number(v, 3) for v in stats)])
    return table


def _below_training_minimum(samples: dict[str, np.ndarray]) -> Para:
    """Why generated values dip below 0 (the training minimum), with each set's share."""
    shares = ", ".join(f"`{k}` {100 * float((x < 0).mean()):.1f} %" for k, x in samples.items())
    return Para(
        "Values are in the training scaler's units: 0 is the lowest training slot, not zero "
        "demand, which lies below it wherever the training minimum is above zero. A value "
        "below 0 is demand lower than any training slot, which held-out data has too; the "
        "quality gate admits such values in the share the held-out part of the training "
        "series has them (`below_min`), and no segment goes below zero demand (samples are "
        f"clamped there). Share of values below 0: {shares}."
    )


__all__ = ["ADVERSARY_EPOCHS", "adversary", "samples"]

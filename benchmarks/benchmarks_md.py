"""``BENCHMARKS.md`` from the results of the benchmarks (``benchmarks/results/*.json``, by
file stem): one section per benchmark, each saying so when its results are missing.
``benchmarks/run.py`` runs the benchmarks and writes the file with :func:`render`."""

from __future__ import annotations

from typing import Any


def fmt_s(seconds: float | None) -> str:
    """Seconds for people: ``0.84 s``, ``12.3 s``, ``4.2 min``, ``3.7 h``."""
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_x(ratio: float) -> str:
    """A ratio: ``2.4×``, ``113×``."""
    return f"{ratio:.1f}×" if ratio < 10 else f"{ratio:.0f}×"


def fmt_mib(mib: float | None) -> str:
    return "–" if mib is None else f"{mib:.0f} MiB"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _machine_section(res: dict[str, dict[str, Any]]) -> list[str]:
    order = ("pipeline", "quick", "training", "diffusion", "readers", "speed", "operate")
    machine = next((res[k]["machine"] for k in order if "machine" in res.get(k, {})), None)
    log = res.get("run", {})
    lines = ["## Machine and run", ""]
    if machine is None:
        return [*lines, "No machine facts recorded.", ""]
    rows = [
        ["CPU", f"{machine.get('cpu_model', machine.get('processor', '?'))}"],
        ["cores", machine.get("cpus", "?")],
        ["torch threads", machine.get("torch_threads", "?")],
        ["torch", machine.get("torch", "?")],
        ["platform", machine.get("platform", "?")],
        ["date", log.get("date", machine.get("date", "?"))],
        ["command", f"`{log.get('command', 'python benchmarks/run.py')}`"],
    ]
    lines += table(["", ""], rows)
    loads = [
        f"{name}: {r['machine']['load_average_at_start'][0]:.1f}"
        for name, r in res.items()
        if "load_average_at_start" in r.get("machine", {})
    ]
    commits = [
        f"{name}: `{str(r['machine']['commit'])[:7]}`"
        + (" (uncommitted changes)" if r["machine"].get("dirty") else "")
        for name, r in res.items()
        if r.get("machine", {}).get("commit")
    ]
    lines += [
        "Each benchmark's numbers were measured at the commit recorded with them: "
        + (", ".join(commits) or "none recorded")
        + ".",
        "",
    ]
    lines += [
        "The machine is shared with other work: the 1-minute load average at the start of "
        "each benchmark was " + ", ".join(loads) + " (2 cores). Ratios are measured within "
        "one process, one right after the other, so that load hits both sides alike; "
        "absolute times are upper bounds for an idle machine.",
        "",
    ]
    for note in log.get("notes", []):
        lines += [note, ""]
    if log.get("quick"):
        lines += ["**Quick mode: tiny measurements for a smoke check; not representative.**", ""]
    return lines


def _targets_section(res: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Speed targets", ""]
    pipe = res.get("pipeline")
    if pipe is None:
        return [*lines, "Not measured (pipeline benchmark not run).", ""]
    e2e, over = pipe["end_to_end"], pipe["overhead"]

    def verdict(met: bool) -> str:
        return "met" if met else "**missed**"

    rows = [
        [
            f"`{pipe['profile']}` profile end to end: one seed, every method and the skyline, "
            f"θ₀'s fit included (`--jobs {e2e['jobs']}`)",
            f"≤ {fmt_s(e2e['target_s'])}",
            f"{fmt_s(e2e['wall_s'])} (measured)",
            verdict(e2e["met"]),
        ],
        [
            f"3D-Learning training / DFL training, the same {over['epochs']} epoch(s) each",
            f"≤ {over['target']:g}×",
            f"{fmt_x(over['ratio'])} ({fmt_s(over['threed']['train_s'])} / "
            f"{fmt_s(over['dfl']['train_s'])}; inner maximisation "
            f"{over['adversary_share']:.0%} of 3D-Learning's)",
            verdict(over["met"]),
        ],
    ]
    quick = res.get("quick")
    if quick is not None:
        q = quick["end_to_end"]
        rows.append(
            [
                f"`quick` profile end to end: {len(q['reference'])} seeds, every method, the "
                f"report, θ₀'s fits included (`--jobs {q['jobs']}`)",
                f"≤ {fmt_s(q['target_s'])}",
                f"{fmt_s(q['wall_s'])} (measured)",
                verdict(q["met"]),
            ]
        )
    lines += table(["target", "bound", "measured", "verdict"], rows)
    return lines


def _quick_section(res: dict[str, dict[str, Any]]) -> list[str]:
    quick = res.get("quick")
    lines = ["## The `quick` profile end to end", ""]
    if quick is None:
        return [*lines, "Not measured (quick benchmark not run).", ""]
    q = quick["end_to_end"]
    fits = ", ".join(
        f"{r['iterations']:,} iterations in {fmt_s(r['fit_s'])} ({r['gate']})"
        for r in q["reference"]
    )
    lines += [
        f"`{quick['command']}` runs `{q['command']}`: {fmt_s(q['wall_s'])} wall, "
        f"{fmt_s(q['cpu_s'])} of CPU time, peak RSS {fmt_mib(q['peak_rss_mib'])}; θ₀'s gated "
        "fits: "
        f"{fits}; from the last unit to the written report {fmt_s(q['report_s'])}.",
        "",
    ]
    rows = [
        [
            u["method"],
            fmt_s(u["train_s"]),
            fmt_s(u["evaluate_s"]) if u["evaluate_s"] else "in training",
        ]
        for u in q["units"]
    ]
    lines += ["Per method, summed over the seeds:", ""]
    lines += table(["method", "training", "evaluation"], rows)
    return lines


def _stages_section(res: dict[str, dict[str, Any]]) -> list[str]:
    pipe = res.get("pipeline")
    lines = [f"## The `{pipe['profile'] if pipe else 'paper'}` profile end to end", ""]
    if pipe is None:
        return [*lines, "Not measured.", ""]
    e2e = pipe["end_to_end"]
    lines += [
        f"`{e2e['command']}`: {fmt_s(e2e['wall_s'])} wall, {fmt_s(e2e['cpu_s'])} of CPU time, "
        f"peak RSS {fmt_mib(e2e['peak_rss_mib'])} (the largest process); report written: "
        f"{'yes' if e2e['report_written'] else 'no'}.",
        "",
    ]
    for ref in e2e["reference"]:
        lines += [
            f"θ₀: {ref['iterations']:,} iterations in {fmt_s(ref['fit_s'])} (training alone), "
            f"quality gate {ref['gate']}.",
            "",
        ]
    total = sum(e2e["stages_s"].values())
    rows = [[k, fmt_s(v), f"{v / total:.0%}"] for k, v in e2e["stages_s"].items()]
    lines += ["Time by stage, summed over the units (they run side by side):", ""]
    lines += table(["stage", "time", "share"], rows)
    rows = [
        [
            u["method"],
            "–" if u["epochs"] is None else str(u["epochs"]),
            fmt_s(u["train_s"]),
            fmt_s(u["evaluate_s"]) if u["evaluate_s"] else "in training",
        ]
        for u in e2e["units"]
    ]
    lines += ["Per unit (epochs run before early stopping):", ""]
    lines += table(["unit", "epochs", "training", "evaluation"], rows)
    over = pipe["overhead"]
    lines += [
        f"Robustness overhead, measured after the run in one process against the θ₀ it "
        f"fitted: DFL {over['epochs']} epoch(s) {fmt_s(over['dfl']['train_s'])}, 3D-Learning "
        f"{over['epochs']} outer epoch(s) {fmt_s(over['threed']['train_s'])} (peak RSS "
        f"{fmt_mib(over['threed']['peak_rss_mib'])}), of which moving θ took "
        f"{fmt_s(over['threed_adversary_s'])}.",
        "",
    ]
    return lines


def _startup_section(res: dict[str, dict[str, Any]]) -> list[str]:
    r = res.get("speed", {}).get("startup")
    lines = ["## Start-up", ""]
    if r is None:
        return [*lines, "Not measured.", ""]
    rows = [
        [
            f"`{name}`",
            fmt_s(v["median_s"]),
            fmt_mib(v["peak_rss_mib"]),
            "–" if v["target_s"] is None else f"≤ {fmt_s(v['target_s'])}",
            "–" if v["met"] is None else ("met" if v["met"] else "**missed**"),
        ]
        for name, v in r.items()
    ]
    lines += table(["command", "median wall time", "peak RSS", "target", "verdict"], rows)
    lines += [
        "Fresh processes, median of "
        f"{len(next(iter(r.values()))['runs_s'])} each, after one warm-up that loads every "
        "file into the page cache.",
        "",
    ]
    return lines


def _evaluation_section(res: dict[str, dict[str, Any]]) -> list[str]:
    r = res.get("speed", {}).get("evaluation")
    lines = ["## Evaluation: each distinct window scored once", ""]
    if r is None:
        return [*lines, "Not measured.", ""]
    rows = [
        [
            "before: every window, batches of 16,384, `no_grad`",
            fmt_s(r["before_s"]),
            fmt_s(r["before_scoring_s"]),
        ],
        [
            "fixed batches of 2,048 and `inference_mode`, every window",
            fmt_s(r.get("batches_only_s")),
            fmt_s(r.get("batches_only_scoring_s")),
        ],
        [
            "each set's distinct windows once, fixed batches, `inference_mode`",
            fmt_s(r.get("per_set_s")),
            fmt_s(r.get("per_set_scoring_s")),
        ],
        [
            "after: the distinct windows of all sets in one pass (drdfl's)",
            fmt_s(r["after_s"]),
            fmt_s(r["after_scoring_s"]),
        ],
        ["**ratio before / after**", fmt_x(r["speedup"]), fmt_x(r["scoring_speedup"])],
    ]
    lines += table(["scoring path", "scoring + summaries", "scoring alone"], rows)
    lines += [
        f"One unit of the `paper` profile: {r['test_sets']} test sets, {r['windows']:,} windows "
        f"of which {r['distinct_windows']:,} distinct within their sets and "
        f"{r.get('distinct_windows_across_sets', r['distinct_windows']):,} across them (the "
        f"main sets, their corruptions and the skyline's parts), `{r['forecaster']}` forecaster, "
        f"{r['bootstrap']} bootstrap resamples per set (the summaries cost the same on both "
        "sides). Both sides alternate in one process (median of "
        f"{len(r['runs']['before'])}). The summaries of the two sides differ by at most a "
        f"relative {r['summary_max_rel_diff']:.1e} (batches of other sizes may round the last "
        "float32 bit differently; drdfl's scores are exactly those of scoring every window in "
        "its fixed batches, as its tests check).",
        "",
    ]
    return lines


def _speed_scaling_section(res: dict[str, dict[str, Any]]) -> list[str]:
    speed = res.get("speed", {})
    lines = ["## Scaling per stage", ""]
    by_length, by_windows = speed.get("scaling_length"), speed.get("scaling_windows")
    if by_length is None and by_windows is None:
        return [*lines, "Not measured.", ""]
    if by_length is not None:
        base = by_length[0]["stages"]
        rows = []
        for stage in base:
            row = [stage]
            for r in by_length:
                cell = r["stages"][stage]
                grow = cell["seconds"] / max(base[stage]["seconds"], 1e-9)
                row.append(
                    f"{fmt_s(cell['seconds'])} ({grow:.1f}×), {fmt_mib(cell['peak_rss_mib'])}"
                )
            rows.append(row)
        header = ["stage"] + [f"×{r['factor']}: {r['train_slots']:,} slots" for r in by_length]
        lines += [
            "Training-series length (synthetic workload; wall time, growth vs ×1, peak RSS):",
            "",
        ]
        lines += table(header, rows)
        lines += [
            "Diffusion pre-training runs a fixed number of iterations and 3D-Learning one "
            "reduced outer epoch on a given θ₀, so only the parts that see the series grow; "
            "a growth clearly above the length factor marks a cost that is worse than linear.",
            "",
        ]
    if by_windows is not None:
        rows = [
            [
                f"×{r['factor']}",
                f"{r['windows']:,}",
                r["layout"],
                f"{fmt_s(r['before']['seconds'])}, {fmt_mib(r['before']['peak_rss_mib'])}",
                f"{fmt_s(r['after']['seconds'])}, {fmt_mib(r['after']['peak_rss_mib'])}",
            ]
            for r in by_windows
        ]
        lines += ["Number of test windows (scoring only; wall time, peak RSS):", ""]
        lines += table(["size", "windows", "windows are", "before", "after"], rows)
    return lines


def _training_section(res: dict[str, dict[str, Any]]) -> list[str]:
    t = res.get("training")
    lines = ["## DFL epoch: vectorised vs. per-window loop", ""]
    if t is None:
        return [*lines, "Not measured.", ""]
    d, p, eq = t["data"], t["prefix"], t["equivalence"]
    rows = [
        [
            "vectorised (drdfl's DFLMethod)",
            fmt_s(t["vectorised_epoch_s"]),
            f"{t['vectorised_ms_per_window']:.3f} ms",
            f"measured, median of {len(t['vectorised_full_epoch']['runs_s'])}"
            if t["vectorised_epoch_measured"]
            else f"extrapolated from {p['batches']} of {d['batches']} batches",
        ],
        [
            "per-window loop (in the benchmark)",
            fmt_s(t["loop_epoch_s"]),
            f"{t['loop_ms_per_window']:.3f} ms",
            "measured"
            if t["loop_epoch_measured"]
            else f"extrapolated from {p['batches']} of {d['batches']} batches",
        ],
    ]
    lines += table(["path", "one epoch", "per window", "how"], rows)
    lines += [
        f"**Speed-up: {t['speedup']:.1f}×** (loop / vectorised on the same {p['windows']:,} "
        f"windows: {fmt_s(p['loop_s'])} vs {fmt_s(p['vectorised_s'])}). Paper training split: "
        f"{d['train_windows']:,} windows of {d['window']} → {d['horizon']}, {d['batches']} "
        f"batches of {d['batch_size']}, `{d['forecaster']}` forecaster, task "
        f"`{d['task']}`, validation excluded. Both paths agree on one batch (dropout off): "
        f"loss relative difference {eq['loss_rel_diff']:.1e}, gradient "
        f"{eq['grad_max_abs_diff_rel']:.1e}.",
        "",
    ]
    return lines


def _diffusion_section(res: dict[str, dict[str, Any]]) -> list[str]:
    r = res.get("diffusion")
    lines = ["## Diffusion training and sampling", ""]
    if r is None:
        return [*lines, "Not run in this mode.", ""]
    rows = []
    for name, sp in r["speed"].items():
        samp = sp["sampling"]
        rows.append(
            [
                name,
                fmt_s(sp["train_s_per_1000_iterations"]),
                fmt_s(samp.get("ddpm", {}).get("s_per_1000_segments")),
                fmt_s(samp.get("ddim", {}).get("s_per_1000_segments")),
                fmt_mib(sp.get("train_peak_rss_mib")),
            ]
        )
    lines += table(
        [
            "preset",
            "per 1,000 iterations",
            "DDPM per 1,000 segments",
            "DDIM per 1,000 segments",
            "peak RSS (training)",
        ],
        rows,
    )
    q = r.get("quality")
    if q:
        lines += [
            f"Quality after {fmt_s(q['budget_s'])} of training ({q['iterations_reached']:,} "
            f"iterations of `fast` on {q['series']}):",
            "",
        ]
        qrows = [
            [
                s,
                f"{v['target']['generated_vs_heldout_wasserstein']:.4f}",
                f"{v['target']['bound']:.4f}",
                "met" if v["target"]["met"] else "**missed**",
            ]
            for s, v in q["by_sampler"].items()
        ]
        lines += table(["sampler", "W(generated, held-out)", "bound", "target"], qrows)
    lines += ["Speeds extrapolated from short runs; see `benchmarks/bench_diffusion.py`.", ""]
    return lines


#: the official 3D-Learning code on this machine kind (2 CPU cores), as an earlier session
#: measured it (not re-run here: it needs its own environment and days)
OFFICIAL = {
    "ddpm_train_s_per_iteration": 11.5,
    "ddpm_sampling_s_per_step_batch64": 2.9,
    "dfl_epoch_s": 24.8,
    "threed_outer_epoch_s": 1.8 * 3600,
    "protocol_s": 52 * 3600,
}


def _official_section(res: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Against the official code", ""]
    diff, train, pipe = res.get("diffusion"), res.get("training"), res.get("pipeline")
    if not (diff and train and pipe) or "paper-2d" not in diff.get("speed", {}):
        return [*lines, "Not measured (needs the diffusion, training and pipeline results).", ""]
    exact = diff["speed"]["paper-2d"]
    it_s = exact["train_s_per_1000_iterations"] / 1000
    # one reverse step of a batch of 64 784-slot segments: DDPM per segment / 500 steps × 64
    ddpm = exact["sampling"]["ddpm"]["s_per_1000_segments"] / 1000 * 64 / 500
    dfl = train["vectorised_epoch_s"]
    e2e = pipe["end_to_end"]["wall_s"]
    threed_epoch = pipe["overhead"]["threed"]["train_s"] / pipe["overhead"]["epochs"]
    stages = [
        (
            "DDPM pre-training, the paper's 28×28 U-Net, per iteration",
            "ddpm_train_s_per_iteration",
            it_s,
        ),
        (
            "DDPM sampling, the same U-Net, one reverse step of 64 segments",
            "ddpm_sampling_s_per_step_batch64",
            ddpm,
        ),
        ("DFL epoch on the paper's training windows (LSTM)", "dfl_epoch_s", dfl),
        ("3D-Learning outer epoch (paper profile)", "threed_outer_epoch_s", threed_epoch),
        ("the protocol, one seed, every method", "protocol_s", e2e),
    ]
    rows = [
        [label, fmt_s(OFFICIAL[key]), fmt_s(ours), fmt_x(OFFICIAL[key] / ours)]
        for label, key, ours in stages
    ]
    lines += table(["stage", "official code", "drdfl", "ratio"], rows)
    lines += [
        "The official code's figures were measured by an earlier session on this machine kind "
        "(2 CPU cores) and are not re-run here. The first three rows are the same work "
        "(the paper's networks on the paper's data). "
        "The last two do not: drdfl's 3D-Learning runs the path-KL adversary on a 10-step "
        "tail (the official one runs the paper's inner epochs over full chains), and its "
        "`paper` profile fits the 1-D `paper` preset, not the 28×28 U-Net (which would add "
        f"about {fmt_s(7000 * it_s)} of pre-training at the speed above).",
        "",
    ]
    return lines


def _readers_section(res: dict[str, dict[str, Any]]) -> list[str]:
    r = res.get("readers")
    lines = ["## Chunked Azure trace reader", ""]
    if r is None:
        return [*lines, "Not measured.", ""]
    rows = [
        [
            f"{x['rows']:,}",
            f"{x['file_mb']:.0f} MB",
            fmt_s(x["seconds"]),
            f"{x['rows_per_s']:,}",
            fmt_mib(x["peak_rss_mb"]),
        ]
        for x in r["runs"]
    ]
    lines += table(["requests", "file", "read + bin 5 s", "rows/s", "peak RSS"], rows)
    return lines


def _operate_section(res: dict[str, dict[str, Any]]) -> list[str]:
    r = res.get("operate")
    lines = ["## Operating a model: plan, backtest, serve", ""]
    if r is None:
        return [*lines, "Not measured (`python benchmarks/bench_operate.py`).", ""]
    m, plan, bt, serve = r["model"], r["plan"], r["backtest"], r["serve"]

    def verdict(key: str) -> str:
        return "met" if r["targets"][key] else "**missed**"

    rows = [
        [
            f"`drdfl plan`: one day of 5-s history ({plan['history_slots']:,} slots, CSV read "
            "from disk), the model loaded, one CPU thread",
            f"≤ {fmt_s(plan['target_s'])}",
            f"{fmt_s(plan['plan']['median_s'])} (model loading included: "
            f"{fmt_s(plan['load_and_plan']['median_s'])})",
            verdict("plan"),
        ],
        [
            f"`drdfl backtest`: {bt['decisions']:,} decisions, {len(bt['policies'])} policies "
            "(online recalibration included), files and figure written, one CPU thread",
            f"≤ {fmt_s(bt['target_s'])}",
            fmt_s(bt["backtest"]["median_s"]),
            verdict("backtest"),
        ],
        [
            f"`drdfl serve`: p99 latency at {serve['rate_per_s']:g} requests/s for "
            f"{serve['seconds']:g} s ({serve['payload_slots']} slots each; client and server "
            f"on {serve['cores']} cores)",
            f"≤ {serve['target_p99_ms']:g} ms",
            f"{serve['p99_ms']} ms (p50 {serve['p50_ms']} ms, max {serve['max_ms']} ms; "
            f"{serve['answered']}/{serve['requests']} answered, {serve['errors']} errors, "
            f"{serve['achieved_rate_per_s']:g}/s sent)",
            verdict("serve"),
        ],
    ]
    lines += [
        f"A `{m['method']}` model with the `{m['forecaster']}` forecaster on the replicas task "
        f"(lead {m['lead']} slots, horizon {m['horizon']}), trained one epoch on the built-in "
        "synthetic data; medians of repeated runs.",
        "",
    ]
    lines += table(["what", "target", "measured", "verdict"], rows)
    return lines


def _runs_section(res: dict[str, dict[str, Any]]) -> list[str]:
    log = res.get("run")
    lines = ["## Benchmark processes", ""]
    if log is None:
        return [*lines, "No run log.", ""]
    rows = [
        [
            r["benchmark"],
            f"`{r['command']}`",
            fmt_s(r["seconds"]),
            fmt_mib(r["peak_rss_mib"]),
            "ok" if r["returncode"] == 0 else f"failed ({r['returncode']})",
        ]
        for r in log["ran"]
    ]
    rows += [[s["benchmark"], "–", "–", "–", f"skipped: {s['reason']}"] for s in log["skipped"]]
    lines += table(["benchmark", "command", "wall time", "peak RSS", "status"], rows)
    return lines


def render(res: dict[str, dict[str, Any]]) -> str:
    """``BENCHMARKS.md`` from the results, by benchmark name (missing ones say so)."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `python benchmarks/run.py` from `benchmarks/results/*.json`; every "
        "number was measured on the machine below. Extrapolated and estimated figures say so.",
        "",
    ]
    for section in (
        _machine_section,
        _targets_section,
        _stages_section,
        _quick_section,
        _startup_section,
        _evaluation_section,
        _speed_scaling_section,
        _training_section,
        _diffusion_section,
        _official_section,
        _readers_section,
        _operate_section,
        _runs_section,
    ):
        lines += section(res)
    return "\n".join(lines).rstrip() + "\n"

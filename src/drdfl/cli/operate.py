"""``drdfl plan``, ``drdfl backtest`` and ``drdfl serve``: a trained model at work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from drdfl.errors import ConfigError

ModelArg = Annotated[
    Path, typer.Argument(help="Model directory (drdfl train, or a run's units/<unit>/model).")
]
TaskOption = Annotated[
    str | None,
    typer.Option(
        "--task",
        help="replicas[:preset] pricing the plan (default: the model's own replicas task; "
        "needed for a model trained on another task).",
    ),
]
TaskParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--task-param", help="A constant of that task: --task-param max_replicas=128 (repeatable)."
    ),
]
TokensOption = Annotated[
    str,
    typer.Option(
        help="Tokens counted when a per-request trace is binned: context | generated | total."
    ),
]


def _params(items: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--task-param {item!r}: expected name=value")
        params[key.strip()] = value.strip()
    return params


def plan(
    model_dir: ModelArg,
    history: Annotated[
        Path,
        typer.Option(
            "--history",
            help="Demand so far: a binned series (drdfl data bin/synth), a replayable trace "
            "(slot, tokens) or a per-request trace, at the model's interval.",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="CSV to write (and a PNG beside it); default: stdout."),
    ] = None,
    task: TaskOption = None,
    task_param: TaskParamOption = None,
    tokens: TokensOption = "context",
) -> None:
    """The replica plan for the slots after the history ends (after the model's lead
    time): slot_start, forecast_tokens, replicas, expected_cost."""
    from drdfl._io import atomic_open, write_text
    from drdfl.serve import load_planner, read_demand

    planner = load_planner(model_dir, task, _params(task_param))
    series = read_demand(history, planner.interval_s, tokens)
    made = planner.plan(series.values, series.start, source=str(history))
    frame = made.frame()
    text = frame.to_csv(index=False, float_format="%.6g")
    if out is None:
        typer.echo(text, nl=False)
        return
    if out.is_dir():
        raise ConfigError(f"{out} is a directory; expected the CSV file to write")
    from drdfl.report.figures import png_bytes
    from drdfl.report.operate import plan_figure

    start = series.start.isoformat() if series.start is not None else None
    png = png_bytes(
        plan_figure,
        series.values,
        frame,
        made.slot,
        planner.replicas.tokens_per_replica_slot,
        planner.interval_s,
        start,
    )
    write_text(out, text)
    figure = out.with_suffix(".png")
    with atomic_open(figure, "wb") as handle:
        handle.write(png)
    first = frame.iloc[0]
    typer.echo(
        f"{len(frame)} slot(s) from {first['slot_start']}: {int(first['replicas'])} replicas "
        f"first (lead {planner.lead} slot(s) of {planner.interval_s:g} s) → {out}, {figure}"
    )


def backtest(
    model_dir: ModelArg,
    trace: Annotated[
        Path,
        typer.Option(
            "--trace", help="Trace to replay (binned series, slot/tokens trace or requests)."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "-o", "--out", help="Directory to write (default: MODEL_DIR/backtest-<trace>)."
        ),
    ] = None,
    task: TaskOption = None,
    task_param: TaskParamOption = None,
    slo_target: Annotated[
        float,
        typer.Option(
            "--slo-target",
            help="Share of slots allowed to exceed capacity when policies are compared at a "
            "matched SLO.",
        ),
    ] = 0.01,
    online: Annotated[
        bool,
        typer.Option("--online/--no-online", help="Also replay the model recalibrated online."),
    ] = True,
    tokens: TokensOption = "context",
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """Replay a trace as a planner runs (each slot decided from what is known then, the
    lead time respected): the model against last-value, moving-average, reactive and
    recent-quantile autoscalers; writes DIR/backtest.csv and a figure."""
    from drdfl.runner.operate import backtest_model

    result, directory = backtest_model(
        model_dir, trace, out, task, _params(task_param), slo_target, online, tokens
    )
    table = result.table
    if as_json:
        typer.echo(json.dumps(table.to_dict("records"), indent=2))
        return
    typer.echo(f"backtest of {model_dir} on {trace} (lead {result.lead} slot(s)):")
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    typer.echo(f"{len(result.slots):,} slots replayed → {directory}")


def serve(
    model_dir: ModelArg,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    task: TaskOption = None,
    task_param: TaskParamOption = None,
) -> None:
    """Serve plans over HTTP: POST /plan {"demand": [...]}, GET /healthz, GET /metrics
    (Prometheus) and GET /keda (KEDA metrics-api); needs the serve extra."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"drdfl serve needs {' and '.join(missing)}: pip install 'drdfl[serve]'")
    from drdfl.serve import load_planner
    from drdfl.serve.http import check_port
    from drdfl.serve.http import serve as run_server

    check_port(host, port)
    planner = load_planner(model_dir, task, _params(task_param))
    typer.echo(
        f"serving {model_dir} on http://{host}:{port} (POST /plan, GET /healthz, /metrics, "
        "/keda); Ctrl-C stops",
        err=True,
    )
    run_server(planner, host, port, model_dir)

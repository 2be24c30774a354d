"""``drdfl run`` and ``drdfl report``: the whole pipeline from one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def run(
    profile: Annotated[str | None, typer.Option(help="quick (default) | paper | honest")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config (may name a profile).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set train.epochs=5 (repeatable)."),
    ] = None,
    test: Annotated[
        list[str] | None,
        typer.Option("--test", help="Extra OOD test set: dataset name or file (repeatable)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path(
        "runs/quick"
    ),
    resume: Annotated[bool, typer.Option(help="Skip units already finished in OUT.")] = False,
    device: Annotated[str | None, typer.Option(help="cpu | cuda")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Directory of real traces.")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train every method over seeds, evaluate on the suites and write the report."""
    from drdfl.config import resolve_config
    from drdfl.evaluation.report import print_summary
    from drdfl.pipeline import Run

    overrides = list(set_ or [])
    if device is not None:
        overrides.append(f"device={device}")
    if data_dir is not None:
        overrides.append(f'data.data_dir="{data_dir}"')
    cfg = resolve_config(profile, config, overrides)
    if test:
        cfg.data.extra_tests = [*cfg.data.extra_tests, *test]
    Run(cfg, out, resume=resume, progress=progress).execute()
    typer.echo(print_summary(out))
    typer.echo(f"report: {out / 'report.md'} and {out / 'report.html'}")


def report(
    out: Annotated[Path, typer.Argument(help="A finished run directory.")],
) -> None:
    """(Re)build OUT/report.md, OUT/report.html and OUT/figures from a run's tables."""
    from drdfl.evaluation.report import build_report, print_summary

    build_report(out)
    typer.echo(print_summary(out))
    typer.echo(f"report: {out / 'report.md'} and {out / 'report.html'}")

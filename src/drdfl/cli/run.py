"""``drdfl run`` and ``drdfl report``: the whole pipeline from one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from drdfl.cli.common import (
    ConfigOption,
    DataDirOption,
    DeviceOption,
    ProfileOption,
    ProgressOption,
    ResumeOption,
    SetOption,
    experiment_config,
)


def run(
    profile: ProfileOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    test: Annotated[
        list[str] | None,
        typer.Option("--test", help="Extra OOD test set: dataset name or file (repeatable)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path(
        "runs/quick"
    ),
    resume: ResumeOption = False,
    device: DeviceOption = None,
    data_dir: DataDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Train every method over seeds, evaluate on the suites and write the report."""
    from drdfl.evaluation.report import print_summary
    from drdfl.pipeline import Run

    cfg = experiment_config(profile, config, set_, device, data_dir)
    if test:
        cfg.data.extra_tests = [*cfg.data.extra_tests, *test]
    Run(cfg, out, resume=resume, progress=progress).execute()
    typer.echo(print_summary(out))
    typer.echo(f"report: {out / 'report.md'} and {out / 'report.html'}")


def report(
    out: Annotated[Path, typer.Argument(help="A finished run directory.")],
) -> None:
    """(Re)build OUT/report.md, OUT/report.html and OUT/figures from a run's tables."""
    from drdfl.report import summary_text, write_report

    write_report(out)
    typer.echo(summary_text(out))
    typer.echo(f"report: {out / 'report.md'} and {out / 'report.html'}")

"""``drdfl sweep``: the run's plan (over a grid of config values) as Ray tasks."""

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
    TestOption,
    experiment_config,
    interruptible,
)


def sweep(
    profile: ProfileOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    test: TestOption = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            help="Vary a config key across points: --grid train.lr=1e-3,3e-3 (repeatable; "
            "the points are every combination).",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path(
        "runs/sweep"
    ),
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join (e.g. auto or ray://host:10001); default: local."),
    ] = None,
    cpus_per_trial: Annotated[
        int, typer.Option("--cpus-per-trial", min=1, help="CPUs (torch threads) per unit.")
    ] = 1,
    resume: ResumeOption = False,
    device: DeviceOption = None,
    data_dir: DataDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Run every method × seed × grid point as Ray tasks; write the tables and reports.

    Exits with status 1 when a unit failed after its retry (it is listed in
    OUT/failed.json, with the units it blocked).
    """
    from drdfl.config import parse_grid
    from drdfl.report import summary_text
    from drdfl.runner.sweep import Sweep

    with interruptible("drdfl sweep", out):
        cfg = experiment_config(profile, config, set_, device, data_dir, test)
        runner = Sweep(
            cfg,
            out,
            parse_grid(list(grid or [])),
            resume=resume,
            address=address,
            cpus_per_trial=cpus_per_trial,
            progress=progress,
        )
        result = runner.execute()
    failed = sum(1 for t in result.failed if t["status"] == "failed")
    typer.echo(
        f"{len(result.trials)} trial(s): {len(result.trials) - len(result.failed)} done, "
        f"{failed} failed, {len(result.failed) - failed} not run"
    )
    for trial in result.failed:
        typer.echo(f"  {trial['status']}: {trial['trial']}: {trial['error']}")
    if len(result.results):
        typer.echo(summary_text(result.out))
        typer.echo(f"report: {result.out / 'report.md'} and {result.out / 'report.html'}")
    for point in result.points if runner.grid else []:
        typer.echo(f"  {point.label}: {runner.point_dir(point) / 'report.md'}")
    if result.failed:
        typer.echo(f"failures: {result.out / 'failed.json'}", err=True)
        raise typer.Exit(1)

"""``drdfl run`` and ``drdfl report``: the whole experiment from one command."""

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


def run(
    profile: ProfileOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    test: TestOption = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path(
        "runs/quick"
    ),
    resume: ResumeOption = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", "-j", min=1, help="Units run side by side (default: config, else cores)."
        ),
    ] = None,
    device: DeviceOption = None,
    data_dir: DataDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Train every method over seeds, evaluate on the suites and write the report."""
    from drdfl.report import summary_text
    from drdfl.runner.driver import Run

    with interruptible("drdfl run", out):
        cfg = experiment_config(profile, config, set_, device, data_dir, test)
        Run(cfg, out, resume=resume, progress=progress, jobs=jobs).execute()
    typer.echo(summary_text(out))
    typer.echo(f"report: {out / 'report.md'} and {out / 'report.html'}")


def report(
    out: Annotated[Path, typer.Argument(help="A finished run directory.")],
) -> None:
    """(Re)build OUT/report.md, OUT/report.html and OUT/figures from a run's tables."""
    from drdfl.errors import ConfigError
    from drdfl.report import summary_text, write_report
    from drdfl.runner.store import RUN_FILE, OutputDir

    holder = OutputDir(out).holder()
    if holder is not None:
        raise ConfigError(
            f"{out} is in use by {holder}: the run is still working; run drdfl report {out} "
            "once it has finished"
        )
    if not (out / "results.csv").is_file():
        if (out / RUN_FILE).is_file():
            raise ConfigError(
                f"{out}: no results.csv; the same drdfl run command with --resume --out {out} "
                "rebuilds it from the finished units"
            )
        raise ConfigError(f"{out}: not a run directory (no results.csv)")
    write_report(out)
    typer.echo(summary_text(out))
    typer.echo(f"report: {out / 'report.md'} and {out / 'report.html'}")

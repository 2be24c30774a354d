"""Render a run's HTML report in a real headless browser and save what it shows.

    python benchmarks/render_report.py RUN_DIR            # an existing run directory
    python benchmarks/render_report.py RUN_DIR --make     # first run a small quick run there

Rebuilds the report from RUN_DIR's outputs (``drdfl.report.write_report``), loads
``report.html`` in headless Chromium, and writes ``RUN_DIR/screenshots/report-<k>.png``
(the page cut into screen-high tiles, to look at) and ``RUN_DIR/screenshots/dom.html``
(the page as the browser parsed it). Checks the parsed page: every figure is an inlined
PNG, no resource is fetched from elsewhere, every table has a header row. Exits 1 when a
check fails, 2 when no Chromium is on PATH (install it, e.g. ``apt-get install chromium``).
This is a visual check a person (or an agent) looks at; it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import html.parser
import os
import shutil
import subprocess
import sys
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
QUICK_RUN = ("--profile", "quick", "--set", "seeds=0", "--set", "methods=dfl,threed,kldro")


class _Page(html.parser.HTMLParser):
    """Counts what the checks need in the browser's DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.tables = 0
        self.headed_tables = 0
        self._in_table = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        for key in ("src", "href"):
            target = values.get(key) or ""
            if target.startswith(("http:", "https:", "//", "file:")):
                self.external.append(target)
        if tag == "table":
            self.tables += 1
            self._in_table = True
        if tag == "thead" and self._in_table:
            self.headed_tables += 1
            self._in_table = False


def browser() -> str | None:
    """The first Chromium-like browser on PATH."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def render(exe: str, page: Path, out: Path, width: int, height: int) -> tuple[Path, str]:
    """A screenshot of ``page`` at ``width`` × ``height`` and the DOM the browser built."""
    common = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    url = page.resolve().as_uri()
    shot = out / "full.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", f"--window-size={width},{height}", url],
        check=True,
        capture_output=True,
        timeout=180,
    )
    dom = subprocess.run(
        [*common, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=180
    ).stdout
    return shot, dom


def tiles(shot: Path, out: Path, tile_height: int) -> list[Path]:
    """``shot`` cut into tiles of ``tile_height`` pixels, blank tiles at the bottom dropped."""
    import numpy as np
    from matplotlib import image

    pixels = image.imread(shot)
    rows = np.flatnonzero((pixels[..., :3] < 0.98).any(axis=(1, 2)))
    bottom = int(rows.max()) + 20 if rows.size else pixels.shape[0]
    written = []
    for k, top in enumerate(range(0, min(bottom, pixels.shape[0]), tile_height), start=1):
        path = out / f"report-{k}.png"
        image.imsave(path, pixels[top : top + tile_height])
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--make", action="store_true", help="first run a small quick run")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=16000, help="page height to capture")
    parser.add_argument("--tile", type=int, default=2000, help="height of each saved tile")
    args = parser.parse_args()
    exe = browser()
    if exe is None:
        print(f"no browser on PATH (looked for {', '.join(BROWSERS)})", file=sys.stderr)
        return 2
    if args.make:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "drdfl", "run", *QUICK_RUN, "--no-progress"]
        subprocess.run([*command, "--out", str(args.run_dir)], check=True, env=env)
    from drdfl.report import write_report

    written = write_report(args.run_dir)
    out = args.run_dir / "screenshots"
    out.mkdir(exist_ok=True)
    shot, dom = render(exe, args.run_dir / "report.html", out, args.width, args.height)
    (out / "dom.html").write_text(dom, encoding="utf-8")
    page = _Page()
    page.feed(dom)
    figures = [k for k in written if k.startswith("figures/")]
    problems = []
    if len(page.images) != len(figures):
        problems.append(f"{len(page.images)} images in the page, {len(figures)} figures written")
    problems += [f"not inlined: {src[:60]}" for src in page.images if not src.startswith("data:")]
    problems += [f"external resource: {target}" for target in page.external]
    if page.headed_tables != page.tables:
        problems.append(f"{page.tables - page.headed_tables} table(s) without a header row")
    for path in tiles(shot, out, args.tile):
        print(path)
    print(f"{page.tables} tables, {len(page.images)} inlined figures")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Screenshots of a quickstart-like ``report.html`` in headless Chromium, to check what a reader sees.

Builds a temporary MLflow store with the 15 runs of ``experiments/quickstart.yaml`` (its points and run ids;
plausible values from ``tests/report_store.py``: ``quickstart_specs``), runs ``lgrpo-bench report --grid
quickstart.yaml --format html`` as a fresh process, and saves two PNGs of the page in a 1600-px-wide window:
``report_top.png`` (1600 × 2000: title and tables) and ``report_full.png`` (1600 × the page's height, up to
``--max-height``: every figure). Install Chromium first (Debian: ``apt-get install -y chromium``).

    python benchmarks/report_screenshot.py --out /tmp/report-shots [--max-height 7000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

WIDTH = 1600
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("no Chromium found: install it (Debian: apt-get install -y chromium) and run again")


def quickstart_report(work: Path) -> Path:
    """``work/report/report.html`` of a store holding the quickstart grid's 15 finished runs."""
    from report_store import build_store, quickstart_specs

    grid_file = work / "quickstart.yaml"
    shutil.copy(ROOT / "experiments" / "quickstart.yaml", grid_file)
    build_store(work, quickstart_specs(grid_file), experiment="quickstart", grid="quickstart")
    subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", "report", "--grid", str(grid_file), "--format", "html,md,latex",
                    "--out", str(work / "report")], cwd=work, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return work / "report" / "report.html"


def screenshot(page: Path, png: Path, height: int) -> None:
    with tempfile.TemporaryDirectory(prefix="lgrpo-chromium-") as profile:
        subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}",
                        f"--screenshot={png}", page.as_uri()], check=True, capture_output=True, timeout=120)
    if not png.is_file():
        raise SystemExit(f"Chromium wrote no screenshot to {png}")


def page_height(page: Path) -> int:
    """The page's height in CSS pixels at 1600 px wide (Chromium's layout, read with --dump-dom and a script)."""
    probe = page.with_name("height_probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace(
        "</body>", "<script>document.title = 'height=' + document.documentElement.scrollHeight;</script></body>"), encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="lgrpo-chromium-") as profile:
        dom = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},2000",
                              "--dump-dom", probe.as_uri()], check=True, capture_output=True, text=True, timeout=120).stdout
    probe.unlink()
    marker = dom.split("<title>height=", 1)
    return int(marker[1].split("<", 1)[0]) if len(marker) == 2 else 6000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "lgrpo-report-screenshots")
    parser.add_argument("--max-height", type=int, default=8000)
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lgrpo-report-shot-") as tmp:
        page = quickstart_report(Path(tmp))
        shutil.copy(page, options.out / "report.html")
        screenshot(page, options.out / "report_top.png", 2000)
        height = min(page_height(page), options.max_height)
        screenshot(page, options.out / "report_full.png", height)
    print(f"wrote {options.out / 'report_top.png'} (1600 × 2000) and {options.out / 'report_full.png'} (1600 × {height}) "
          f"of {options.out / 'report.html'}")


if __name__ == "__main__":
    main()

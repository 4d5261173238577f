"""Screenshots of the quickstart grid's view in the MLflow UI (``lgrpo-bench ui --grid quickstart``) at 1600 px.

Builds a temporary MLflow store with the 15 runs of ``experiments/quickstart.yaml`` (``tests/report_store.py``:
``quickstart_specs``) and the grid's saved view as the orchestrator writes it (``grid_view_columns``), starts
``lgrpo-bench ui --grid quickstart`` as a fresh process, opens the printed link in headless Chromium (DevTools
protocol, ``tests/browser.py``) and saves ``ui_view_first_visit.png`` (a fresh browser profile: MLflow opens its
Assistant panel) and ``ui_view.png`` (that panel closed, as the UI remembers once a user closed it). Prints the
runs count, the group names and any text the table cuts. Install Chromium first (Debian: apt-get install -y chromium).

    python benchmarks/ui_screenshot.py --out /tmp/ui-shots
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

READY = "document.querySelectorAll('.ag-row').length >= 20 && /matching runs/.test(document.body.innerText)"


def quickstart_store(work: Path) -> str:
    from report_store import build_store, quickstart_specs

    from lgrpo_bench import tracking as t
    from lgrpo_bench.dispatch.orchestrator import grid_view_columns
    from lgrpo_bench.runs.resolve import load_grid

    grid_file = work / "quickstart.yaml"
    shutil.copy(ROOT / "experiments" / "quickstart.yaml", grid_file)
    uri, client, _, _ = build_store(work, quickstart_specs(grid_file), experiment="quickstart", grid="quickstart")
    experiment_id = client.get_experiment_by_name("quickstart").experiment_id
    t.set_grid_view(client, experiment_id, "quickstart", **grid_view_columns(load_grid(grid_file)))
    return uri


def main() -> None:
    from browser import CUT_TEXTS_JS, Page

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "lgrpo-ui-screenshots")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lgrpo-ui-shot-") as tmp:
        uri = quickstart_store(Path(tmp))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "lgrpo_bench.cli", "ui", "--tracking-uri", uri, "--port", str(port),
                                   "--workers", "1", "--grid", "quickstart"], cwd=tmp, stdout=subprocess.PIPE, text=True)
        try:
            url = None
            for line in server.stdout:
                if line.startswith("grid quickstart"):
                    url = line.split(": ", 1)[1].strip()
                    break
            if url is None:
                raise SystemExit(f"lgrpo-bench ui printed no grid link (exit {server.wait()})")
            base = url.split("#", 1)[0]
            with Page(1600, 1000) as page:
                page.open(url)
                page.settled(READY)
                page.screenshot(options.out / "ui_view_first_visit.png")
                cut_first = page.evaluate(CUT_TEXTS_JS)
            with Page(1600, 1000) as page:  # a profile whose user closed the Assistant panel
                page.open(base)
                page.wait_for("document.readyState === 'complete'")
                page.evaluate("localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
                              "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true')")
                page.open("about:blank")
                time.sleep(0.5)
                page.open(url)
                page.settled(READY)
                page.screenshot(options.out / "ui_view.png")
                text, cut = page.text(), page.evaluate(CUT_TEXTS_JS)
        finally:
            server.terminate()
            server.wait(timeout=30)
    counts, groups = re.findall(r"\d+ matching runs", text), re.findall(r"Group: \S+", text)
    print(f"{', '.join(counts)}; groups: {', '.join(groups)}; cut: {cut or 'nothing'} "
          f"(first visit: {cut_first or 'nothing'})")
    print(f"wrote {options.out / 'ui_view.png'} and {options.out / 'ui_view_first_visit.png'} (1600 px wide)")


if __name__ == "__main__":
    main()

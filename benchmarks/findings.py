"""The published findings as positive and negative controls: run `lgrpo-bench findings` and print its verdict table
with the wall time (a benchmark, not a test: the full set is about 100 tiny-s runs of 40 steps, budget ≤ 60 min on
2 CPU cores; the runs are shared between the grids where their configs are equal).

    .venv/bin/python benchmarks/findings.py                       # every grid of experiments/findings/
    .venv/bin/python benchmarks/findings.py experiments/findings/gspo_scale.yaml --no-run
    .venv/bin/python benchmarks/findings.py --json findings.json  # also the verdicts as JSON

Arguments are passed on to `lgrpo-bench findings` (grid files, --no-run, --slots, --json, --plain). Runs write to
./mlflow.db and ./runs/ of the working directory, as `lgrpo-bench run` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", "findings", *argv],
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=os.getcwd())
    seconds = time.perf_counter() - started
    cores = os.cpu_count()
    print(f"\nlgrpo-bench findings {' '.join(argv)}: exit code {done.returncode}, wall {seconds:.1f} s "
          f"({seconds / 60:.1f} min) on {cores} CPU core(s)", flush=True)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

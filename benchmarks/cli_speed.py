"""How long the commands a researcher types take, as fresh processes (imports included).

Targets (issue 15, this 2-core machine, median of ``--repeats`` fresh processes):

=========================================  ========
``plan experiments/quickstart.yaml``       ≤ 1.0 s
``plan`` of a 10,000-point grid            ≤ 2.5 s
``status`` / ``status GRID``               ≤ 1.5 s
``config show RUN.yaml``                   ≤ 1.0 s
``report --grid`` of 15 runs (md, no plots) ≤ 3.0 s
every ``--help``                           ≤ 0.5 s
=========================================  ========

``report --experiment quickstart`` is timed beside ``report --grid``: the same 15 runs without expanding the grid
file (which, until grid checks stop importing torch, costs more than the report itself).

The store: a temporary folder with the quickstart grid's 15 runs logged as training and evaluation log them
(tags, flattened params, ``eval/arith/*`` metrics and identity tags, 500 per-problem records each, a held-out
accuracy curve; ``tests/report_store.py``: ``quickstart_specs``) and its grid parent run, written once with MLflow
before timing starts. Printed per command: median wall and CPU seconds (user + system of the child) of the fresh
processes, and whether it imported torch, transformers or MLflow (``-X importtime``), the usual cause of a slow
command. Wall times on a shared machine are inflated by the other jobs; CPU seconds are not. Python's bytecode cache
is on for the commands (as in an installation; :func:`child_environment`), or off with ``--no-bytecode-cache``.

    python benchmarks/cli_speed.py [--repeats 5] [--only report] [--no-bytecode-cache]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

HEAVY = ("torch", "transformers", "mlflow", "trl", "lm_eval", "matplotlib", "pandas", "scipy.stats")


def quickstart_store(work: Path) -> Path:
    """``work/quickstart.yaml`` (the shipped grid) and ``work/mlflow.db`` holding its 15 finished runs."""
    from report_store import build_store, quickstart_specs

    grid_file = work / "quickstart.yaml"
    shutil.copy(ROOT / "experiments" / "quickstart.yaml", grid_file)
    cwd = os.getcwd()
    os.chdir(work)  # the grid's store is ./mlflow.db
    try:
        build_store(work, quickstart_specs(grid_file), experiment="quickstart", grid="quickstart")
    finally:
        os.chdir(cwd)
    return grid_file


def big_grid(work: Path) -> Path:
    grid = {"name": "ten-thousand", "base": {"model": {"name": "tiny-s"}},
            "axes": {"algorithm.name": ["grpo", "dapo", "dr_grpo", "lambda_grpo", "dapo_full"],
                     "train.learning_rate": [5e-5, 1e-4, 2e-4, 3e-4], "train.seed": list(range(500))}}
    path = work / "big.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def child_environment(bytecode_cache: bool) -> dict[str, str]:
    """The commands' environment: Python's bytecode cache on (as after ``pip install``), unless told otherwise
(then lgrpo_bench's ``__pycache__`` folders are deleted first: the variable only stops writing them).

    Some machines (this one) set ``PYTHONDONTWRITEBYTECODE=1``; then every command compiles lgrpo_bench's sources
    (an editable install has no ``.pyc`` of them), 0.1–0.2 s per command that a user's installation does not pay."""
    env = dict(os.environ)
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:  # as on such a machine: the installed libraries have their .pyc, our sources none
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        for cache in (ROOT / "lgrpo_bench").rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
    return env


def timed(argv: list[str], cwd: Path, repeats: int, env: dict[str, str]) -> tuple[float, float, list[float], list[str]]:
    """Median wall and CPU seconds of ``repeats`` fresh runs (after one untimed run that writes the bytecode cache
    where it is on), every run's wall seconds, heavy modules imported."""
    subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", *argv], cwd=cwd, capture_output=True, env=env)
    seconds, cpu = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        completed = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", *argv], cwd=cwd, capture_output=True,
                                   text=True, env=env)
        seconds.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if completed.returncode != 0:
            raise SystemExit(f"lgrpo-bench {' '.join(argv)} failed:\n{completed.stdout}\n{completed.stderr}")
    trace = subprocess.run([sys.executable, "-X", "importtime", "-m", "lgrpo_bench.cli", *argv], cwd=cwd,
                           capture_output=True, text=True, env=env).stderr
    imported = sorted(m for m in HEAVY if re.search(rf"\|\s+{re.escape(m)}$", trace, re.MULTILINE))
    return statistics.median(seconds), statistics.median(cpu), seconds, imported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="", help="Time only the commands whose label contains this text")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="Run the commands with PYTHONDONTWRITEBYTECODE=1 (every import compiles our sources)")
    options = parser.parse_args()
    env = child_environment(not options.no_bytecode_cache)
    with tempfile.TemporaryDirectory(prefix="lgrpo-cli-speed-") as tmp:
        work = Path(tmp)
        grid_file = quickstart_store(work)
        big = big_grid(work)
        run_file = ROOT / "experiments" / "tiny_lambda.yaml"
        checks = [
            ("--help", ["--help"], 0.5),
            ("run --help", ["run", "--help"], 0.5),
            ("plan --help", ["plan", "--help"], 0.5),
            ("report --help", ["report", "--help"], 0.5),
            ("eval --help", ["eval", "--help"], 0.5),
            ("sweep --help", ["sweep", "--help"], 0.5),
            ("config show tiny_lambda.yaml", ["config", "show", str(run_file)], 1.0),
            ("plan quickstart.yaml (15 done)", ["plan", str(grid_file)], 1.0),
            ("plan 10,000-point grid", ["plan", str(big)], 2.5),
            ("status", ["status"], 1.5),
            ("status quickstart.yaml", ["status", str(grid_file)], 1.5),
            ("report --grid quickstart (md, no plots)",
             ["report", "--grid", str(grid_file), "--format", "md", "--no-plots", "--out", str(work / "report")], 3.0),
            ("report --experiment quickstart (md, no plots)",  # the same report without checking the grid file
             ["report", "--experiment", "quickstart", "--format", "md", "--no-plots", "--out", str(work / "report")], 3.0),
        ]
        cache = "off (PYTHONDONTWRITEBYTECODE=1)" if options.no_bytecode_cache else "on"
        print(f"fresh processes, median of {options.repeats} (python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}, bytecode cache {cache})")
        print(f"{'command':44s} {'wall':>7s} {'CPU':>7s} {'target':>7s}  {'ok':3s} spread of wall    heavy imports")
        for label, argv, target in checks:
            if options.only not in label:
                continue
            median, cpu, every, imported = timed(argv, work, options.repeats, env)
            ok = "yes" if median <= target else ("cpu" if cpu <= target else "NO")
            print(f"{label:44s} {median:6.2f}s {cpu:6.2f}s {target:6.1f}s  {ok:3s} {min(every):.2f}–{max(every):.2f} s"
                  f"      {', '.join(imported) or '-'}", flush=True)


if __name__ == "__main__":
    main()

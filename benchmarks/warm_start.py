"""Warm-start benchmark: build every tiny preset for warm-start seeds 0..4 from a clean cache and check the band.

Usage::

    nice -n 5 python benchmarks/warm_start.py --jobs 2          # 3 presets x seeds 0..4 in a fresh temporary cache
    python benchmarks/warm_start.py --presets tiny-s --seeds 0 1 2
    python benchmarks/warm_start.py --cache-dir ~/.cache/lgrpo-bench   # reuse / fill the real cache
    python benchmarks/warm_start.py --json results.json

Each build is single-threaded and deterministic; ``--jobs`` builds that many at once in separate processes.
Columns: SFT steps of the kept weights / steps run / budget and why the SFT stopped (``in_target``: validation
greedy accuracy entered the stop rule's target; ``overshoot``: it jumped over it and the closest check was
kept; ``budget``: the step budget ran out), validation greedy accuracy at the kept check, greedy accuracy on
the 500 held-out problems (all, 2-digit, 3-digit), worked share of samples at T = 1 (128 held-out prompts ×
8), the fraction of those groups of 8 whose rewards are not all equal (GRPO's signal), SFT wall and CPU
seconds (validation checks included; wall is inflated when the CPU is shared, CPU seconds are not), and
whether the held-out greedy accuracy lies in the band. Exit status 1 when a cell is outside the band.

Measured on the 2-core AMD EPYC (AVX2) development machine, torch 2.13, shared with other jobs, recipe version 2:
all 15 cells (3 presets × seeds 0..4) in the band; the table is in docs/measurements.md ("Warm starts").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from lgrpo_bench.models.presets import TINY_PRESETS, WARM_START_BAND

COLUMNS = [
    ("preset", "{}"),
    ("seed", "{}"),
    ("steps", "{}"),
    ("stop_reason", "{}"),
    ("validation_acc", "{:.3f}"),
    ("greedy_acc", "{:.3f}"),
    ("greedy_acc_2digit", "{:.3f}"),
    ("greedy_acc_3digit", "{:.3f}"),
    ("worked_share_sampled", "{:.2f}"),
    ("mixed_group_fraction", "{:.2f}"),
    ("sft_seconds", "{:.0f}"),
    ("sft_cpu_seconds", "{:.0f}"),
    ("in_band", "{}"),
]
HEADERS = {
    "steps": "SFT steps kept/run/max", "stop_reason": "stop", "validation_acc": "validation greedy",
    "greedy_acc": "held-out greedy", "greedy_acc_2digit": "2-digit", "greedy_acc_3digit": "3-digit",
    "worked_share_sampled": "worked share (T=1)", "mixed_group_fraction": "mixed groups of 8",
    "sft_seconds": "SFT wall s", "sft_cpu_seconds": "SFT CPU s", "in_band": f"in band {WARM_START_BAND}",
}


def _cell(fmt: str, value: object) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def markdown_table(rows: list[dict]) -> str:
    """Render benchmark rows as a Markdown table."""
    header = "| " + " | ".join(HEADERS.get(name, name) for name, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [header, rule]
    for row in rows:
        shown = {**row, "steps": f"{row['sft_steps']}/{row['sft_steps_run']}/{row['sft_max_steps']}",
                 "in_band": "yes" if row["in_band"] else "**no**"}
        lines.append("| " + " | ".join(_cell(fmt, shown.get(name)) for name, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """Per preset: accuracy range and mean, seconds; then how many cells lie in the band."""
    lines = []
    for preset in dict.fromkeys(row["preset"] for row in rows):
        mine = [row for row in rows if row["preset"] == preset]
        accs = [row["greedy_acc"] for row in mine]
        cpu = [row["sft_cpu_seconds"] for row in mine]
        mixed = [row["mixed_group_fraction"] for row in mine]
        spread = f" ± {statistics.stdev(accs):.3f}" if len(accs) > 1 else ""
        lines.append(f"{preset}: held-out greedy {min(accs):.3f}–{max(accs):.3f} (mean {statistics.mean(accs):.3f}"
                     f"{spread}), mixed groups {min(mixed):.2f}–{max(mixed):.2f}, SFT CPU {min(cpu):.0f}–{max(cpu):.0f} s")
    inside = sum(row["in_band"] for row in rows)
    lines.append(f"in band {WARM_START_BAND}: {inside} of {len(rows)}")
    return "\n".join(lines)


def build_one(preset: str, seed: int, cache_dir: str, sft_steps: int | None) -> dict:
    """Build (or load) one warm start in this process; its metrics plus the band verdict and total seconds."""
    from lgrpo_bench.models.tiny import build_tiny

    started = time.perf_counter()
    lines: list[str] = []
    result = build_tiny(preset, cache_dir=Path(cache_dir), seed=seed, sft_steps=sft_steps, emit=lines.append)
    for line in lines:
        print(f"  {line}", file=sys.stderr, flush=True)
    return {**result.metrics, "in_band": result.band.in_band, "total_seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(TINY_PRESETS), choices=list(TINY_PRESETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--sft-steps", type=int, default=None, help="override every preset's step budget")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: a fresh temporary folder")
    parser.add_argument("--jobs", type=int, default=1, help="builds at once (each single-threaded)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="lgrpo-warm-start-") as tmp:
        cache_dir = str(args.cache_dir if args.cache_dir is not None else Path(tmp))
        cells = [(preset, seed) for preset in args.presets for seed in args.seeds]
        started = time.perf_counter()
        with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(build_one, preset, seed, cache_dir, args.sft_steps) for preset, seed in cells]
            rows = []
            for future in futures:
                row = future.result()
                rows.append(row)
                print(f"{row['preset']} seed {row['seed']}: held-out greedy {row['greedy_acc']:.3f} "
                      f"({'in band' if row['in_band'] else 'OUT OF BAND'}), kept step {row['sft_steps']} "
                      f"({row['stop_reason']}), SFT {row['sft_seconds']:.0f} s wall / {row['sft_cpu_seconds']:.0f} s CPU"
                      f"{' (cached)' if row['cached'] else ''}", file=sys.stderr, flush=True)
        print(markdown_table(rows))
        print()
        print(summary(rows))
        print(f"({len(rows)} builds in {time.perf_counter() - started:.0f} s wall, {max(1, args.jobs)} at a time)")
        if args.json is not None:
            args.json.write_text(json.dumps(rows, indent=2))
    return 0 if all(row["in_band"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Warm-start benchmark: build each tiny preset with its default SFT budget and print what it reached.

Usage::

    python benchmarks/warm_start.py                       # all presets, seed 0, fresh temporary cache
    python benchmarks/warm_start.py --presets tiny-s --seeds 0 1 2
    python benchmarks/warm_start.py --cache-dir ~/.cache/lgrpo-bench   # reuse / fill the real cache
    python benchmarks/warm_start.py --json results.json

Columns: SFT wall and CPU seconds, parameters, greedy accuracy on the 500 held-out problems (all, 2-digit,
3-digit), worked share of greedy completions, accuracy and worked share of samples at T = 1 (128 held-out
prompts × 8), and the fraction of those groups of 8 whose rewards are not all equal (GRPO's signal).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from lgrpo_bench.models.tiny import TINY_PRESETS, build_tiny

COLUMNS = [
    ("preset", "{}"),
    ("seed", "{}"),
    ("n_params", "{:,}"),
    ("sft_steps", "{}"),
    ("sft_seconds", "{:.0f}"),
    ("sft_cpu_seconds", "{:.0f}"),
    ("greedy_acc", "{:.3f}"),
    ("greedy_acc_2digit", "{:.3f}"),
    ("greedy_acc_3digit", "{:.3f}"),
    ("worked_share_greedy", "{:.3f}"),
    ("sampled_acc_t1", "{:.3f}"),
    ("worked_share_sampled", "{:.3f}"),
    ("sampled_acc_worked", "{:.3f}"),
    ("sampled_acc_direct", "{:.3f}"),
    ("mixed_group_fraction", "{:.3f}"),
]


def _cell(fmt: str, value: object) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def markdown_table(rows: list[dict]) -> str:
    """Render benchmark rows as a Markdown table."""
    header = "| " + " | ".join(name for name, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [header, rule]
    for row in rows:
        lines.append("| " + " | ".join(_cell(fmt, row.get(name)) for name, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(TINY_PRESETS), choices=list(TINY_PRESETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--sft-steps", type=int, default=None, help="override every preset's step budget")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: a fresh temporary folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="lgrpo-warm-start-") as tmp:
        cache_dir = args.cache_dir if args.cache_dir is not None else Path(tmp)
        rows = []
        for preset in args.presets:
            for seed in args.seeds:
                started = time.perf_counter()

                def progress(step: int, total: int, loss: float, _preset=preset, _seed=seed, _started=started) -> None:
                    if step % 100 == 0 or step == total:
                        elapsed = time.perf_counter() - _started
                        print(f"  {_preset} seed {_seed}: step {step}/{total} loss {loss:.4f} ({elapsed:.0f} s)",
                              file=sys.stderr, flush=True)

                result = build_tiny(preset, cache_dir=cache_dir, seed=seed, sft_steps=args.sft_steps, progress=progress)
                row = {**result.metrics, "total_seconds": round(time.perf_counter() - started, 1)}
                rows.append(row)
                print(f"{preset} seed {seed}: greedy {row['greedy_acc']:.3f}, mixed groups "
                      f"{row['mixed_group_fraction']:.3f}, {row['sft_seconds']:.0f} s SFT"
                      f"{' (cached)' if row['cached'] else ''}", file=sys.stderr, flush=True)
        print(markdown_table(rows))
        if args.json is not None:
            args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

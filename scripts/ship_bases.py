"""Build (or take from a cache) the tiny warm starts that ship in the package, and write their manifest.

Usage::

    python scripts/ship_bases.py                                   # the default set (below)
    python scripts/ship_bases.py --cache-dir /path/to/builds       # reuse builds already made there
    python scripts/ship_bases.py --bases tiny-s:0,1 --check        # only verify what is shipped

The default set: arith warm starts of tiny-s seeds 0-4, tiny-m and tiny-l seed 0 (the quickstart, the robustness
benchmark) and the lenmix bases of tiny-s seeds 0-4 (the findings; ``lgrpo_bench.models.testbed``).
Each base is built with the project's own recipe (:func:`lgrpo_bench.models.tiny.build_tiny`, never from the
shipped copy), copied into ``lgrpo_bench/models/bases/<cache key>/`` (into a temporary folder first, then moved
into place), and recorded in ``lgrpo_bench/models/bases/MANIFEST.json``: key, preset, seed, recipe version,
the kept SFT step, validation and held-out greedy accuracy, the SHA-256 of the weights, the bytes of the folder,
the CPU and torch build it was made on, the commit of the recipe and the date. ``--check`` verifies every shipped
folder against its recorded hashes and the manifest and exits 1 on any mismatch. Size budget: 20 MB in all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

SIZE_BUDGET_BYTES = 20 * 1024 * 1024
DEFAULT_BASES = ["tiny-s:0,1,2,3,4", "tiny-m:0", "tiny-l:0"]
DEFAULT_TASK_BASES = ["lenmix:tiny-s:0,1,2,3,4"]
MANIFEST = "MANIFEST.json"


def parse_bases(specs: list[str]) -> list[tuple[str, int]]:
    """``["tiny-s:0,1", "tiny-m:0"]`` -> ``[("tiny-s", 0), ("tiny-s", 1), ("tiny-m", 0)]``."""
    out = []
    for spec in specs:
        preset, _, seeds = spec.partition(":")
        if not seeds:
            raise SystemExit(f"--bases: {spec!r} is not PRESET:SEED[,SEED...]")
        out += [(preset, int(seed)) for seed in seeds.split(",")]
    return out


def commit_of_repo() -> str:
    """HEAD (:func:`lgrpo_bench.tracking.provenance.git_commit`), ``+dirty`` when ``lgrpo_bench/models`` (the recipe)
    has uncommitted changes."""
    from lgrpo_bench.tracking.provenance import git_commit

    root = Path(__file__).resolve().parents[1]
    try:
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "lgrpo_bench/models"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        dirty = ""
    return git_commit() + ("+dirty" if dirty else "")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def manifest_entry(key: str, metrics: dict, folder: Path, commit: str, task: str = "arith") -> dict:
    provenance = metrics.get("provenance", {})
    return {
        "key": key,
        "task": task,
        "preset": metrics["preset"],
        "seed": metrics["seed"],
        "recipe_version": metrics.get("recipe_version", metrics.get("lenmix_recipe_version")),
        "sft_steps_kept": metrics.get("sft_steps"),
        "validation_greedy_acc": metrics.get("validation_acc"),
        "heldout_greedy_acc": metrics["greedy_acc"],
        "parent_model_sha256": metrics.get("parent_model_hash"),
        "model_sha256": metrics["files"]["model.safetensors"]["sha256"],
        "bytes": folder_bytes(folder),
        "built_on": {"cpu": provenance.get("lgrpo.host.cpu"), "cpu_capability": metrics.get("torch_cpu_capability"),
                     "torch": metrics.get("torch_version")},
        "recipe_commit": commit,
        "shipped": dt.date.today().isoformat(),
    }


def check(shipped_dir: Path) -> int:
    from lgrpo_bench.models.tiny import _inspect  # the cache's own verification

    manifest = json.loads((shipped_dir / MANIFEST).read_text())
    listed = {entry["key"]: entry for entry in manifest["bases"]}
    problems = []
    folders = sorted(p for p in shipped_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    for folder in folders:
        state, metrics, problem = _inspect(folder)
        entry = listed.pop(folder.name, None)
        if state != "ok":
            problems.append(f"{folder.name}: {problem or state}")
        elif entry is None:
            problems.append(f"{folder.name}: not in {MANIFEST}")
        elif entry["model_sha256"] != metrics["files"]["model.safetensors"]["sha256"]:
            problems.append(f"{folder.name}: weights differ from {MANIFEST}")
    problems += [f"{key}: in {MANIFEST} but not shipped" for key in listed]
    total = sum(folder_bytes(f) for f in folders)
    if total > SIZE_BUDGET_BYTES:
        problems.append(f"shipped bases take {total / 1e6:.1f} MB, over the {SIZE_BUDGET_BYTES / 1e6:.0f} MB budget")
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    print(f"{len(folders)} shipped bases, {total / 1e6:.1f} MB, {'OK' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", nargs="+", default=DEFAULT_BASES, help="PRESET:SEED[,SEED...] (default: %(default)s)")
    parser.add_argument("--task-bases", nargs="*", default=DEFAULT_TASK_BASES,
                        help="TASK:PRESET:SEED[,SEED...] bases of other tasks (default: %(default)s)")
    parser.add_argument("--cache-dir", default=None, help="where to build (or find) the builds; default: a temporary folder")
    parser.add_argument("--check", action="store_true", help="only verify the shipped bases against their hashes and the manifest")
    args = parser.parse_args(argv)

    import tempfile

    from lgrpo_bench.models.testbed import build_tiny_for_task
    from lgrpo_bench.models.tiny import SHIPPED_DIR, build_tiny

    if args.check:
        return check(SHIPPED_DIR)
    cache_dir = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="lgrpo-ship-"))
    commit = commit_of_repo()
    entries = []
    SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
    builds = [("arith", preset, seed) for preset, seed in parse_bases(args.bases)]
    for spec in args.task_bases:
        task, _, rest = spec.partition(":")
        builds += [(task, preset, seed) for preset, seed in parse_bases([rest])]
    for task, preset, seed in builds:
        if task == "arith":
            build = build_tiny(preset, seed=seed, cache_dir=cache_dir, use_shipped=False, emit=print)
        else:  # its arith parent must come from the cache too, never from the shipped copy being replaced
            build = build_tiny_for_task(preset, task, seed=seed, cache_dir=cache_dir, emit=print, use_shipped=False)
        key = build.path.name
        tmp = SHIPPED_DIR / f".{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(build.path, tmp)
        metrics = json.loads((tmp / "metrics.json").read_text())
        final = SHIPPED_DIR / key
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        entries.append(manifest_entry(key, metrics, final, commit, task))
        print(f"shipped {key}: held-out greedy {metrics['greedy_acc']:.3f}, {entries[-1]['bytes'] / 1e6:.2f} MB")
    kept = {e["key"] for e in entries}
    for folder in SHIPPED_DIR.iterdir():
        if folder.is_dir() and folder.name not in kept:
            shutil.rmtree(folder)
    manifest = {"about": "tiny warm starts shipped with lgrpo-bench; see lgrpo_bench/models/tiny.py, 'Shipped bases'",
                "bases": entries, "total_bytes": sum(e["bytes"] for e in entries)}
    (SHIPPED_DIR / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return check(SHIPPED_DIR)


if __name__ == "__main__":
    raise SystemExit(main())

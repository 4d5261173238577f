"""How fast, and in how much memory, hostile input ends (issue 18): YAML alias bombs and huge grids.

Each case runs ``lgrpo-bench plan FILE`` as a fresh process, as a careless or hostile user would, and prints its
exit code, wall and CPU seconds, peak resident memory (``ru_maxrss`` of the child) and the length of its error
message. Before the limits existed: a 9-level alias bomb in ``description:`` ran ``plan`` for over 60 s at
4.4 GB; an 8-level one in ``base.eval.benchmarks`` printed a 448 MB error after 13 s at 2.2 GB; 10⁵ seeds ran
over 120 s at 1.0 GB; a 1000 × 1000 grid passed 4.6 GB and kept growing. tests/test_hostile_input.py checks the
outcome of the same cases under a 1.5 GiB address-space limit.

    python benchmarks/hostile_input.py
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def bomb(levels: int, leaf: str = '"lol"') -> list[str]:
    """Billion-laughs anchors: ``levels`` lists, each of nine aliases of the previous one."""
    lines = [f"a0: &a0 {leaf}"]
    lines += [f"a{n}: &a{n} [" + ", ".join(f"*a{n - 1}" for _ in range(9)) + "]" for n in range(1, levels + 1)]
    return lines


CASES = {
    "9-level alias bomb in description": "\n".join(
        ["x-anchors:", *("  " + line for line in bomb(9)), "name: bomb", "description: *a9",
         "base: {model: {name: tiny-s}}", "axes: {train.seed: [0]}"]),
    "8-level alias bomb in base.eval.benchmarks": "\n".join(
        ["x-anchors:", *("  " + line for line in bomb(8, "math500")), "name: bomb",
         "base: {model: {name: tiny-s}, eval: {benchmarks: *a8}}", "axes: {train.seed: [0]}"]),
    "10^5 seeds": "name: seeds\nbase: {model: {name: tiny-s}}\naxes:\n  train.seed: ["
                  + ", ".join(str(s) for s in range(100_000)) + "]\n",
    "1000 x 1000 grid": "name: square\nbase: {model: {name: tiny-s}}\naxes:\n  train.seed: ["
                        + ", ".join(str(s) for s in range(1000)) + "]\n  train.learning_rate: ["
                        + ", ".join(f"{1e-6 * (n + 1):.3g}" for n in range(1000)) + "]\n",
}


def main() -> None:
    print(f"{'case':44s} {'exit':>4s} {'wall':>7s} {'CPU':>6s} {'peak RSS':>9s} {'message':>9s}")
    with tempfile.TemporaryDirectory(prefix="lgrpo-hostile-") as tmp:
        for label, text in CASES.items():
            path = Path(tmp) / "grid.yaml"
            path.write_text(text + "\n")
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            completed = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", "plan", str(path)], cwd=tmp,
                                       capture_output=True, text=True, timeout=600)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            peak_mib = after.ru_maxrss / 1024  # the largest child so far: the cases grow, so it is this one's
            print(f"{label:44s} {completed.returncode:4d} {wall:6.2f}s {cpu:5.2f}s {peak_mib:7.0f} MiB "
                  f"{len(completed.stderr):7d} ch", flush=True)
            first = completed.stderr.strip().splitlines()[:1]
            print(f"    {first[0][:160] if first else '(no message)'}")


if __name__ == "__main__":
    main()

"""benchmarks/gpu_check.py on this CPU machine: it runs up to the CUDA boundary (tiny-s, every run config, the
packing grid) and says for every GPU check that it skipped it and why; exit code 0, or 1 over budget."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lgrpo_bench.algorithms import ALGORITHMS

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"
NO_CUDA = "no CUDA device (torch.cuda.is_available() is False"


def _lines(output: str) -> dict[str, tuple[str, str]]:
    """check name -> (status, text) from the script's one line per check."""
    found = {}
    for line in output.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] in ("OK", "SKIP", "FAIL"):
            found[parts[1]] = (parts[0], parts[2])
    return found


@pytest.mark.slow
def test_gpu_check_runs_to_the_cuda_boundary_and_says_what_it_skipped(warm_tiny, tiny_cache):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test is about a machine without CUDA")
    done = subprocess.run([sys.executable, str(SCRIPT), "--cache-dir", str(tiny_cache), "--warm-start-steps", "120"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = _lines(done.stdout)
    assert checks["env"][0] == "OK" and "device: none" in checks["env"][1]
    assert checks["tiny-model"][0] == "OK" and "(cached)" in checks["tiny-model"][1]  # the session's build, reused
    gpu_checks = [f"train-bf16[{name}]" for name in ALGORITHMS] + ["eval-hf[arith]", "gpu-packing", "vllm-rollouts",
                                                                   "eval-vllm[arith]"]
    for name in gpu_checks:  # every registered algorithm, and every other GPU check, skipped with the reason
        assert checks[name][0] == "SKIP" and checks[name][1].startswith(NO_CUDA), (name, checks.get(name))
    assert set(checks) == {"env", "tiny-model", *gpu_checks}
    assert f"gpu_check: 2 ok, {len(gpu_checks)} skipped, 0 failed in " in done.stdout


@pytest.mark.e2e  # runs benchmarks/gpu_check.py
def test_gpu_check_fails_over_budget(warm_tiny, tiny_cache, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # its dataclasses look their module up there
    spec.loader.exec_module(gpu_check)
    # the session's tiny-s (cached): nothing fails, but no run fits in a budget of 0 s
    assert gpu_check.main(["--cache-dir", str(tiny_cache), "--warm-start-steps", "120", "--budget-s", "0"]) == 1
    output = capsys.readouterr().out
    assert "(budget 0 s, EXCEEDED)" in output and " 0 failed " in output, output

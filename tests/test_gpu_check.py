"""benchmarks/gpu_check.py on this CPU machine: it runs up to the CUDA boundary (tiny-s, every run config, the
packing grid) and says for every GPU check that it skipped it and why; exit code 0, or 1 over budget."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from test_seeding import vllm_boundary  # noqa: F401, F811 - the fixture, used through stand_in_vllm

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
                                                                   "eval-vllm[arith]", "eval-protocol", "vllm-seeds"]
    for name in gpu_checks:  # every registered algorithm, and every other GPU check, skipped with the reason
        assert checks[name][0] == "SKIP" and checks[name][1].startswith(NO_CUDA), (name, checks.get(name))
    # the CPU-checkable parts of the seed path and the paper grid's evaluation protocol run here
    assert checks["seed-derivation"][0] == "OK" and "all distinct and repeatable" in checks["seed-derivation"][1]
    assert checks["paper-protocol"][0] == "OK" and "aime25 avg@32 T 0.6 top-p 0.95" in checks["paper-protocol"][1]
    assert set(checks) == {"env", "tiny-model", "seed-derivation", "paper-protocol", *gpu_checks}
    assert f"gpu_check: 4 ok, {len(gpu_checks)} skipped, 0 failed in " in done.stdout


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


@pytest.fixture
def gpu_check(monkeypatch):
    """benchmarks/gpu_check.py imported as a module."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_paper_protocol_check_resolves_the_grid_and_refuses_an_off_anchor_protocol(gpu_check, tmp_path, monkeypatch):
    protocol: dict = {}
    text = gpu_check.paper_protocol(protocol)
    for part in ("aime24 avg@32 T 0.6 top-p 0.95", "aime25 avg@32 T 0.6 top-p 0.95", "amc23 avg@16 T 0.6 top-p 0.95",
                 "math500 greedy"):
        assert part in text, text
    assert protocol["eval"].overrides["aime24"].k == 32
    grid = yaml.safe_load(gpu_check.PAPER_GRID.read_text())
    grid["base"]["eval"]["overrides"]["amc23"] = {"k": 4, "temperature": 0.6, "top_p": 0.95}  # too few samples
    monkeypatch.setattr(gpu_check, "PAPER_GRID", tmp_path / "grid.yaml")
    gpu_check.PAPER_GRID.write_text(yaml.safe_dump(grid, sort_keys=False))
    with pytest.raises(RuntimeError, match="amc23: not an anchor protocol"):
        gpu_check.paper_protocol({})


def test_seed_derivation_check(gpu_check):
    assert "all distinct and repeatable" in gpu_check.seed_derivation()


@pytest.fixture
def stand_in_vllm(vllm_boundary, monkeypatch):  # noqa: F811 - the fixture imported above
    """test_seeding's stand-ins at TRL's vLLM boundary, and a ``vllm`` module holding the stand-in SamplingParams."""
    from test_seeding import StandInSamplingParams

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=StandInSamplingParams))
    return vllm_boundary


def test_vllm_seeds_check_runs_to_the_engine_and_finds_an_unseeded_engine(gpu_check, stand_in_vllm, warm_tiny,
                                                                        tmp_path, monkeypatch):
    args = gpu_check.parse_args(["--cache-dir", str(tmp_path), "--steps", "1"])
    data = gpu_check.run_config_data(tmp_path, args, algorithm="grpo", seed=7, use_vllm=True)
    data["train"].update(bf16=False, num_generations=4, prompts_per_step=2)
    config = gpu_check.validated(data)
    text = gpu_check.vllm_seeds(config, str(warm_tiny.path), tmp_path)
    assert "repeats, seed 8 differs" in text and "4 distinct completions of 4 rows" in text, text
    # the bug it is there to find: TRL's own engine seed (the process index), whatever train.seed is
    import lgrpo_bench.training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "seeded_vllm_engine", lambda seed: contextlib.nullcontext())
    with pytest.raises(RuntimeError, match=r"vLLM engine seed 0, expected engine_seed\(7, 0\)"):
        gpu_check.vllm_seeds(config, str(warm_tiny.path), tmp_path / "unseeded")


@pytest.mark.slow
def test_eval_protocol_check_on_the_hf_backend(gpu_check, warm_tiny, tmp_path, data_dir, monkeypatch):
    """The protocol check as the GPU runs it, on lm-eval's HF backend (vLLM needs CUDA): identity as stated, 32
    samples per problem that differ, eval seed 0 repeated exactly, seed 1 different."""
    monkeypatch.setenv("LGRPO_DATA_DIR", str(data_dir))
    protocol: dict = {}
    gpu_check.paper_protocol(protocol)
    text = gpu_check.eval_protocol(str(warm_tiny.path), protocol["eval"], tmp_path, limit=2, backend="hf")
    assert "aime24 avg@32 T 0.6 top-p 0.95 and math500 greedy logged as stated" in text, text
    assert "arith at that protocol" in text and "seed 0 repeats exactly, seed 1 differs" in text, text

"""What a terminal shows: the real ``lgrpo-bench`` in a subprocess, stdout a pipe (as in ``… | less`` or ``> out``).

* tables are not cut at 80 columns when stdout is not a terminal; ``--plain`` prints TSV;
* library chatter (MLflow's INFO lines on a fresh store, lm-eval's warnings and progress bars, ``git``'s
  complaints) stays off the terminal unless ``-v``; the ``eval`` table has no unnamed column;
* ``--version`` prints the versions and imports nothing heavy.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # what the command line prints, through real processes


LONG_GRID = "a-rather-long-grid-name-that-a-terminal-of-80-columns-would-cut-0123456789"
LONG_VALUE = "123456789012345678901234567890123"
"""A value longer than 30 characters (the plan table used to cut values there) for an axis of the grid."""
GRID_YAML = f"""\
name: {LONG_GRID}
base:
  model: {{name: tiny-s}}
  task: {{name: arith}}
  train: {{max_steps: 2}}
  tracking: {{uri: "sqlite:///STORE", runs_dir: "RUNS"}}
axes:
  algorithm.name: [grpo, lambda_grpo]
  train.lr_scheduler: [constant, constant_with_warmup]
  task.num_train_problems: [4000, {LONG_VALUE}]
"""
AXIS_KEYS = ["algorithm.name", "train.lr_scheduler", "task.num_train_problems"]


def lgrpo(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, stdout and stderr pipes (never a terminal)."""
    return subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.fixture
def long_grid(tmp_path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(GRID_YAML.replace("STORE", str(tmp_path / "mlflow.db")).replace("RUNS", str(tmp_path / "runs")))
    return path


def test_piped_plan_table_keeps_every_cell_whole(long_grid, tmp_path):
    result = lgrpo("plan", str(long_grid), cwd=tmp_path, env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "…" not in out and "..." not in out, out
    assert LONG_GRID in out
    header = next(line for line in out.splitlines() if "run id" in line)
    for key in AXIS_KEYS:
        assert f" {key} " in header, header
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == 8
    assert sum(LONG_VALUE in row for row in rows) == 4 and sum("constant_with_warmup" in row for row in rows) == 4
    assert max(len(line) for line in out.splitlines()) > 80


def test_plain_plan_is_tab_separated_with_one_header(long_grid, tmp_path):
    result = lgrpo("plan", str(long_grid), "--plain", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0].split("\t")
    assert header == ["#", "run id", *AXIS_KEYS, "state", "detail"]
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == 8 and all(len(row) == len(header) for row in rows)
    assert {row[header.index("task.num_train_problems")] for row in rows} == {"4000", LONG_VALUE}
    assert {row[header.index("state")] for row in rows} == {"new"}
    assert all(re.fullmatch(r"[0-9a-f]{12}", row[1]) for row in rows)
    assert LONG_GRID in result.stderr and "new 8" in result.stderr  # title and states line: not on stdout


OUR_EVAL_LINES = re.compile(r"^(evaluating oracle:gold \(oracle\) on arith \[greedy\]|arith: acc 1\.0000 ± 0\.0000 over 5 problems)$")


@pytest.mark.slow
def test_eval_shows_our_lines_only_unless_verbose(tmp_path, data_dir):
    """One quiet run on a fresh store (MLflow creates its tables: INFO lines) and one ``-v`` run, side by side."""
    quiet_dir, verbose_dir = tmp_path / "quiet", tmp_path / "verbose"
    quiet_dir.mkdir()
    verbose_dir.mkdir()
    command = [sys.executable, "-m", "lgrpo_bench.cli"]
    eval_args = ["eval", "--model", "oracle:gold", "--benchmarks", "arith", "--limit", "5"]
    env = {**os.environ, "LGRPO_DATA_DIR": str(data_dir)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_LOGGING_LEVEL", None)
    quiet = subprocess.Popen([*command, *eval_args], cwd=quiet_dir, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    verbose = subprocess.Popen([*command, "-v", *eval_args, "--no-log"], cwd=verbose_dir, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    quiet_out, quiet_err = quiet.communicate(timeout=600)
    verbose_out, verbose_err = verbose.communicate(timeout=600)
    assert quiet.returncode == 0 and verbose.returncode == 0, quiet_err + verbose_err
    assert (quiet_dir / "mlflow.db").exists(), "the quiet run should have created (and logged to) a fresh store"
    assert quiet_err == "", f"library output reached the terminal:\n{quiet_err}"
    assert "Custom kwargs can be passed" in verbose_err, "-v should show lm-eval's own messages"

    lines = quiet_out.splitlines()
    assert [line for line in lines if OUR_EVAL_LINES.match(line)] == lines[:2]
    header = next(line for line in lines if "benchmark" in line)
    names = [cell.strip() for cell in header.strip("┃ ").split("┃")]
    assert names == ["benchmark", "protocol", "n", "acc", "± stderr", "pass@k", "mean length"]
    assert re.fullmatch(r"MLflow run [0-9a-f]{32}", lines[-1])


def test_version_lists_the_libraries_and_imports_nothing_heavy(tmp_path):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "lgrpo_bench.cli", "--version"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    from importlib.metadata import version

    lines = result.stdout.splitlines()
    assert lines[0] == f"lgrpo-bench {version('lgrpo-bench')}"
    for package in ("torch", "transformers", "trl", "mlflow", "lm-eval"):
        assert f"  {package} {version(package)}" in lines
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    heavy = {"torch", "transformers", "trl", "mlflow", "lm_eval", "numpy", "typer", "rich", "pydantic", "yaml"}
    assert imported & heavy == set(), f"--version imported {sorted(imported & heavy)}"
    assert "Usage" not in result.stdout


def test_trl_deprecation_warning_stays_out_of_run_logs(tmp_path):
    """TRL reads transformers' deprecated ``is_gradient_checkpointing`` at every generation: once our trainer module is
    imported (as in every training process), reading it prints nothing, and other FutureWarnings still show."""
    code = """
import warnings
import lgrpo_bench.training.trainer
from transformers import Qwen2Config, Qwen2ForCausalLM
model = Qwen2ForCausalLM(Qwen2Config(vocab_size=16, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                     num_attention_heads=1, num_key_value_heads=1))
for _ in range(3):
    model.is_gradient_checkpointing
warnings.warn("another FutureWarning", FutureWarning)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "is_gradient_checkpointing" not in result.stderr
    assert "another FutureWarning" in result.stderr

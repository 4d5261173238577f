"""The README promise (issue #8): its set-up commands are the ones CI runs, and its main command, on a reduced
quickstart, ends by printing a results table with one row per algorithm.

CI (``.ci/run``) runs this file inside the fresh virtual environment it creates with the README's install
command, so the ``lgrpo-bench`` used here is the freshly installed entry point.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
VENV = "python3 -m venv .venv && . .venv/bin/activate"
INSTALL = 'pip install torch==2.13.0 && pip install -e ".[dev]"'
CI_PIP_FLAGS = ("-q", "--no-compile")
"""What CI adds to the README's install commands: quiet, and no bytecode compiled at install (``.ci/run`` says why)."""
MAIN = "lgrpo-bench run experiments/quickstart.yaml"
TESTS = "python -m pytest -q"


def setup_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Set-up", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_readme_set_up_is_install_main_command_and_tests():
    lines = [line.split("#", 1)[0].strip() for line in setup_block().splitlines() if line.strip()]
    assert lines == [VENV, INSTALL, MAIN, TESTS]


def test_readme_gives_the_fast_lane():
    """Issue 23: the whole suite and the developer's fast lane are both in the README."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f'`{TESTS} -m "not e2e"`' in text and f"`{TESTS}` runs all of them" in text


def test_the_docs_site_gives_the_same_set_up():
    text = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text.split("## Set-up", 1)[1], re.S).group(1)
    assert [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()] == [VENV, INSTALL, MAIN, TESTS]


def test_ci_uses_the_readme_install_and_test_commands():
    """CI makes a fresh virtual environment and activates it (as the README's first line does, under its own name),
    installs with the README's commands, builds the docs site with warnings as errors, then runs the tests."""
    ci = (ROOT / ".ci" / "run").read_text()
    venv = re.search(r"^python3 -m venv (\S+)$", ci, re.M)
    assert venv and re.search(rf"^\. {re.escape(venv.group(1))}/bin/activate$", ci, re.M)
    installs = [" ".join(word for word in line.split() if word not in CI_PIP_FLAGS)
                for line in ci.splitlines() if line.startswith("python -m pip install") and "--upgrade pip" not in line]
    assert installs == [f"python -m {command.strip()}" for command in INSTALL.split("&&")], installs  # README's, in order
    docs = re.search(r"^.*mkdocs build --strict.*$", ci, re.M)
    tests = re.search(r'^python -m pytest -q "\$@"$', ci, re.M)  # arguments: the fast lane
    assert docs and tests and docs.start() < tests.start() and venv.start() < docs.start()
    assert "--quiet" not in docs.group(0) and "-q" not in docs.group(0).split(), "--quiet hides the warnings --strict counts"


def reduced_quickstart(tmp_path: Path) -> Path:
    """The quickstart with 1 seed and 2 steps; its model stays the quickstart's (the shipped tiny-s base)."""
    grid = yaml.safe_load((ROOT / "experiments" / "quickstart.yaml").read_text())
    grid["name"] = "quickstart-reduced"
    grid["axes"]["train.seed"] = [0]
    base = grid["base"]
    assert base["model"]["name"] == "tiny-s"
    base["train"].update({"max_steps": 2, "num_generations": 4, "prompts_per_step": 4, "heldout_every": 1,
                          "heldout_size": 16, "save_every": 1})
    base["eval"]["limit"] = 24
    base["tracking"] = {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "quickstart-reduced",
                        "runs_dir": str(tmp_path / "runs")}
    path = tmp_path / "quickstart.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


@pytest.mark.slow
def test_main_command_on_a_reduced_quickstart_prints_one_row_per_algorithm(tmp_path):
    algorithms = yaml.safe_load((ROOT / "experiments" / "quickstart.yaml").read_text())["axes"]["algorithm.name"]
    entry_point = Path(sys.executable).with_name("lgrpo-bench")
    assert entry_point.exists(), "the README's install command provides the lgrpo-bench command"
    grid = reduced_quickstart(tmp_path)
    empty_cache = tmp_path / "model-cache"  # a fresh clone's: the base must come from the package, not a build
    result = subprocess.run([str(entry_point), "run", str(grid)], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "160", "LGRPO_CACHE_DIR": str(empty_cache)}, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    summary = result.stdout.split("Δ vs", 1)[0]
    rows = [line for line in summary.splitlines() if line.startswith("│")]
    names = [cells[2] for cells in ([c.strip() for c in row.split("│")] for row in rows) if len(cells) > 3]
    assert sorted(name for name in names if name in algorithms) == sorted(algorithms), summary
    assert "ran 5 " in result.stdout and "failed 0" in result.stdout
    assert not empty_cache.exists() or not any(empty_cache.glob("tiny-s-*")), "the quickstart built its base model"
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quickstart-reduced")
    sources = {run.data.tags.get("lgrpo.base_model.source") for run in client.search_runs([experiment.experiment_id])
               if run.data.tags.get("lgrpo.kind") == "train"}
    assert sources == {"shipped"}, sources

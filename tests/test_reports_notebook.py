"""notebooks/analysis.ipynb runs the way the docs say, from the project root:

    jupyter execute notebooks/analysis.ipynb --output analysis-run

(nbclient's ``jupyter execute``, installed by ``.[dev]``). Its kernel runs in ``notebooks/``; with no store variable
set it finds the project's ``mlflow.db`` one folder up, as the CLI finds ``./mlflow.db`` in the project root. It shows
the library's table, its per-run pivot in the table's unit (points), and the plots.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from report_store import RunSpec, build_store

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "analysis.ipynb"
README_COMMAND = ["jupyter", "execute", "notebooks/analysis.ipynb", "--output", "analysis-run"]
"""The command the docs give, run from the project root."""


@pytest.mark.slow
def test_the_notebook_runs_as_documented_and_speaks_in_points(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    project = tmp_path / "project"
    specs = [RunSpec(algorithm, seed, "tiny", records={"arith": [bool((i * (seed + 2) + (algorithm == "dapo")) % 4) for i in range(40)]},
                     curves={"train/reward_mean": [(0, 0.1 * seed), (10, 0.5)], "train/heldout_acc": [(0, 0.2), (10, 0.4 + 0.1 * seed)]})
             for algorithm in ("grpo", "dapo") for seed in (0, 1)]
    uri, _, _, _ = build_store(project, specs, experiment="nb")  # project/mlflow.db, as `lgrpo-bench run` writes it
    (project / "notebooks").mkdir()
    shutil.copy(NOTEBOOK, project / "notebooks" / "analysis.ipynb")
    env = {key: value for key, value in os.environ.items()
           if key not in ("MLFLOW_TRACKING_URI", "LGRPO_REPORT_URI", "LGRPO_REPORT_EXPERIMENT", "LGRPO_REPORT_GRID")}
    bin_dir = str(Path(sys.executable).parent)  # the jupyter of this environment
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    done = subprocess.run(README_COMMAND, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    notebook = nbformat.read(project / "notebooks" / "analysis-run.ipynb", as_version=4)

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    texts = [o.get("text", "") for o in outputs if o.get("output_type") == "stream"]
    assert any(f"store: sqlite:///{project / 'mlflow.db'}" in text for text in texts), texts
    assert any("4 runs from " in text for text in texts), texts
    markdown = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    from lgrpo_bench.reports import load_report_table
    from lgrpo_bench.reports.render import to_markdown

    table, data, _ = load_report_table(uri)
    assert markdown == [to_markdown(table)]  # the same table as the library gives
    assert any("image/png" in o.get("data", {}) for o in outputs)
    pivot = next(o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {}) and "benchmark" in o["data"]["text/plain"])
    assert "acc (points)" in pivot, pivot
    grpo = sorted(run.eval_metrics["arith"]["acc"] for run in data.runs if run.algorithm == "grpo")
    assert grpo == [0.5, 0.75]  # as built: the pivot's grpo mean is 62.5 points, not 0.625
    assert "62.5" in pivot and "0.625" not in pivot, pivot


def test_the_notebook_finds_the_store_as_the_cli_does(tmp_path):
    """A variable wins; else the nearest mlflow.db upwards (the kernel in notebooks/, the store in the project root);
    else one error naming what to set."""
    from lgrpo_bench.reports.loader import ReportInputError
    from lgrpo_bench.reports.notebook import notebook_tracking_uri

    notebooks = tmp_path / "project" / "notebooks"
    notebooks.mkdir(parents=True)
    with pytest.raises(ReportInputError, match="no MLflow store: no mlflow.db in .*LGRPO_REPORT_URI"):
        notebook_tracking_uri(notebooks, environ={})
    (tmp_path / "project" / "mlflow.db").write_bytes(b"")
    assert notebook_tracking_uri(notebooks, environ={}) == f"sqlite:///{tmp_path / 'project' / 'mlflow.db'}"
    (notebooks / "mlflow.db").write_bytes(b"")  # the nearest wins
    assert notebook_tracking_uri(notebooks, environ={}) == f"sqlite:///{notebooks / 'mlflow.db'}"
    assert notebook_tracking_uri(notebooks, environ={"MLFLOW_TRACKING_URI": "sqlite:////x/a.db"}) == "sqlite:////x/a.db"
    assert notebook_tracking_uri(notebooks, environ={"MLFLOW_TRACKING_URI": "sqlite:////x/a.db",
                                                     "LGRPO_REPORT_URI": "sqlite:////y/b.db"}) == "sqlite:////y/b.db"

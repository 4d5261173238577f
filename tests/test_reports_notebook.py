"""notebooks/analysis.ipynb runs top to bottom against a small store and shows the table and a plot."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_store import RunSpec, build_store

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "analysis.ipynb"


@pytest.mark.slow
def test_notebook_executes_and_reproduces_the_table(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    specs = [RunSpec(algorithm, seed, "tiny", records={"arith": [bool((i * (seed + 2) + (algorithm == "dapo")) % 4) for i in range(40)]},
                     curves={"train/reward_mean": [(0, 0.1 * seed), (10, 0.5)], "train/heldout_acc": [(0, 0.2), (10, 0.4 + 0.1 * seed)]})
             for algorithm in ("grpo", "dapo") for seed in (0, 1)]
    uri, _, _, _ = build_store(tmp_path / "store", specs, experiment="nb")
    monkeypatch.setenv("LGRPO_REPORT_URI", uri)
    monkeypatch.setenv("LGRPO_REPORT_EXPERIMENT", "nb")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    texts = [o.get("text", "") for o in outputs if o.get("output_type") == "stream"]
    assert any("4 runs from experiment(s) nb" in text for text in texts)
    markdown = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    from lgrpo_bench.reports import load_report_table
    from lgrpo_bench.reports.render import to_markdown

    table, _, _ = load_report_table(uri, experiments=["nb"])
    assert markdown == [to_markdown(table)]  # the same table as the library gives
    assert any("image/png" in o.get("data", {}) for o in outputs)

"""``status`` and ``plan`` tell one story while a grid runs (issue 26, item 5).

A store holds a grid's parent run (made by the orchestrator's own code), one run done, one run whose worker is alive
but has no MLflow run yet (its warm start: the first minutes of a grid), and one new run, later failed before its
MLflow run existed (recorded on the parent run). Bare ``status`` (every grid
of the store), ``status GRID`` and ``plan GRID`` count the same states; ``status GRID`` before any run has finished
says so plainly instead of suggesting a wrong experiment name.
"""

from __future__ import annotations

import re

from typer.testing import CliRunner

from lgrpo_bench.cli import app


def _grid(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text(
        "name: agree\nbase:\n  model: {name: tiny-s}\n  task: {name: arith}\n  train: {max_steps: 2}\n"
        f"  tracking: {{uri: 'sqlite:///{tmp_path / 'mlflow.db'}', experiment: agree-exp, runs_dir: '{tmp_path / 'runs'}'}}\n"
        "axes:\n  train.seed: [0, 1, 2]\n")
    return grid


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def _counts(text: str) -> dict[str, int]:
    """The states line: ``new 1 queued 0 running 1 trained 0 stopped 0 failed 0 pruned 0 done 1``."""
    return {state: int(n) for state, n in re.findall(r"\b(new|queued|running|trained|stopped|failed|pruned|done) (\d+)\b",
                                                     text)}


def test_status_and_plan_count_the_same_states_while_a_grid_runs(tmp_path, monkeypatch):
    from lgrpo_bench import tracking as t
    from lgrpo_bench.dispatch.job import _Heartbeat
    from lgrpo_bench.dispatch.orchestrator import _parent_runs
    from lgrpo_bench.tracking import record
    from lgrpo_bench.tracking.record import RunLayout
    from lgrpo_bench.runs.resolve import load_grid

    monkeypatch.chdir(tmp_path)
    grid = _grid(tmp_path)
    expanded = load_grid(grid)
    uri = expanded.points[0].config.tracking.uri
    clients: dict = {}
    parent = next(iter(_parent_runs(expanded, expanded.points, clients).values()))
    warming, done, new = expanded.points
    layout = RunLayout.for_config(warming.config, warming.run_id)
    layout.root.mkdir(parents=True)
    heartbeat = _Heartbeat(layout, parent)  # as execute_job writes it
    try:
        for args in (["status", str(grid)], ["plan", str(grid)], ["status", "--tracking-uri", uri]):
            text = _invoke(*args)
            assert "done 0" in text or "done" not in _counts(text), text
        early = _invoke("status", str(grid))
        assert "no results table yet: none of the grid's 3 runs has finished training" in early, early
        assert "check the experiment name" not in early

        client = clients[uri]
        experiment_id = t.get_or_create_experiment(client, "agree-exp")
        mlflow_id = record.create_run(client, experiment_id, tags={
            t.TAG_KIND: t.KIND_TRAIN, t.TAG_RUN_ID: done.run_id, t.TAG_GRID: "agree"})
        client.set_tag(mlflow_id, t.TAG_STATE, t.STATE_DONE)

        plan = _counts(_invoke("plan", str(grid)))
        status = _counts(_invoke("status", str(grid)))
        whole_store = CliRunner().invoke(app, ["status", "--tracking-uri", uri, "--plain"]).stdout.splitlines()
        assert plan == status and plan["running"] == 1 and plan["done"] == 1 and plan["new"] == 1, (plan, status)
        header = whole_store[0].split("\t")
        row = dict(zip(header, next(line for line in whole_store if line.startswith("agree\t")).split("\t")))
        assert {state: int(row[state]) for state in plan} == plan, (row, plan)
        client.set_tag(parent, t.failure_tag(new.run_id), "exit code 1 before its MLflow run existed")
        plan = _counts(_invoke("plan", str(grid)))
        whole_store = CliRunner().invoke(app, ["status", "--tracking-uri", uri, "--plain"]).stdout.splitlines()
        row = dict(zip(header, next(line for line in whole_store if line.startswith("agree\t")).split("\t")))
        assert plan["failed"] == 1 and plan["new"] == 0 and {state: int(row[state]) for state in plan} == plan, (row, plan)
    finally:
        heartbeat.close()
    after = _counts(_invoke("plan", str(grid)))
    assert after["running"] == 0 and after["new"] == 1  # its worker gone, the warm-starting run is new again

"""A grid that logs to a real MLflow tracking server (issue 17): ``mlflow server`` on 127.0.0.1 started by the
test (:class:`clusters.MlflowServer`; SQLite behind it here, PostgreSQL on a cluster, see docs/clusters.md),
``tracking.uri: http://127.0.0.1:PORT``, two tiny runs writing at once, artifacts proxied by the server. Everything a
user reads afterwards — ``plan``, the results table, the artifacts — comes through the server; no file of the
store is written by the runs themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from clusters import MlflowServer, log
from test_faults import EXPERIMENT, cli, run_ids, write_grid

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

STEPS = 3


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path / "server")
    try:
        yield server.start()
    finally:
        server.stop()


def test_a_grid_logs_through_an_mlflow_tracking_server(mlflow_server, warm_tiny, tmp_path):
    from lgrpo_bench.tracking import open_client

    work = tmp_path / "work"
    work.mkdir()
    grid = write_grid(work, str(warm_tiny.path), seeds=(0, 1), slots=2, uri=mlflow_server.uri, steps=STEPS, name="server")
    assert yaml.safe_load(grid.read_text())["base"]["tracking"]["uri"] == mlflow_server.uri
    result = cli("run", str(grid), cwd=work)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done 2, failed 0" in result.stdout
    log(f"grid of 2 runs logged to {mlflow_server.uri}")

    client = open_client(mlflow_server.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), experiment.artifact_location  # proxied
    runs = client.search_runs([experiment.experiment_id], "tags.`lgrpo.kind` = 'train'")
    assert sorted(run.data.tags["lgrpo.run_id"] for run in runs) == sorted(run_ids(grid))
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`lgrpo.kind` = 'grid'")
    for run in runs:
        assert run.data.tags["lgrpo.state"] == "done"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss")) == list(range(1, STEPS + 1))
        config = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / run.info.run_id)))
        assert yaml.safe_load(config.read_text())["tracking"]["uri"] == mlflow_server.uri
    assert (tmp_path / "server" / "artifacts").is_dir()  # the server stored them, not the runs
    assert not list(work.glob("*.db")) and not (work / "mlruns").exists()

    # plan reads the server: both done
    rows = json.loads(cli("plan", str(grid), "--json", cwd=work).stdout)["runs"]
    assert {row["state"] for row in rows} == {"done"}

"""The MLflow-free SQLite reader agrees with MlflowClient.search_runs on a store MLflow wrote itself."""

from __future__ import annotations

import math
import subprocess
import sys

from lgrpo_bench.tracking.reader import SqliteReader as StoreReader
from lgrpo_bench.tracking.store import open_client


def _store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = open_client(uri)
    a = client.create_experiment("a")
    b = client.create_experiment("b")
    made = []
    for i, kind in enumerate(["train", "train", "eval", "warm_start", "grid"]):
        run = client.create_run(a, tags={"lgrpo.kind": kind, "lgrpo.run_id": f"r{i}", "lgrpo.grid": "g" if i < 2 else "h"})
        client.log_param(run.info.run_id, "train.seed", str(i))
        client.log_metric(run.info.run_id, "train/loss", 1.0 / (i + 1), step=1)
        client.log_metric(run.info.run_id, "train/loss", 0.5 / (i + 1), step=2)
        if i == 1:
            client.log_metric(run.info.run_id, "eval/arith/acc", float("nan"))
            client.set_terminated(run.info.run_id, "FAILED")
        made.append(run.info.run_id)
    client.create_run(b, tags={"lgrpo.kind": "train"})
    client.delete_run(client.create_run(a, tags={"lgrpo.kind": "train"}).info.run_id)
    client.delete_experiment(client.create_experiment("gone"))
    return uri, client, a, b, made


def test_reader_returns_what_search_runs_returns(tmp_path):
    uri, client, a, b, made = _store(tmp_path)
    with StoreReader(tmp_path / "mlflow.db") as reader:
        assert reader.experiment_id("a") == a and reader.experiment_id("gone") is None
        assert [e.name for e in reader.experiments()] == ["Default", "a", "b"]
        ours = reader.runs([a], params=True)
        theirs = client.search_runs([a], order_by=["attributes.start_time DESC"])
        assert [r.info.run_id for r in ours] == [r.info.run_id for r in theirs]
        for mine, reference in zip(ours, theirs):
            assert mine.data.tags == reference.data.tags and mine.data.params == reference.data.params
            assert mine.info.status == reference.info.status and mine.info.start_time == reference.info.start_time
            assert mine.data.metrics.keys() == reference.data.metrics.keys()
            for key, value in reference.data.metrics.items():
                assert (math.isnan(value) and math.isnan(mine.data.metrics[key])) or mine.data.metrics[key] == value
        filtered = reader.runs([a], tag_equals={"lgrpo.grid": "g"}, tag_not_in={"lgrpo.kind": ("eval", "warm_start")})
        assert {r.info.run_id for r in filtered} == set(made[:2])
        assert {r.info.run_id for r in reader.runs([a], tag_not_in={"lgrpo.kind": ("eval", "warm_start")})} == {
            made[0], made[1], made[4]}
        assert reader.runs([]) == []


def test_reading_does_not_import_mlflow(tmp_path):
    _store(tmp_path)
    code = ("import sys; from lgrpo_bench.tracking.reader import SqliteReader as StoreReader; "
            f"r = StoreReader({str(tmp_path / 'mlflow.db')!r}); print(len(r.runs([r.experiment_id('a')]))); "
            "assert 'mlflow' not in sys.modules, 'mlflow imported'")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "5"


def test_the_client_reader_returns_what_the_sqlite_reader_returns_across_pages(tmp_path):
    """Both implementations of the one reader give the same runs (newest first, tags, params, metrics) for the same
    selections, the client one paging through MLflow's search two runs at a time."""
    from lgrpo_bench.tracking.reader import ClientReader

    uri, client, a, b, made = _store(tmp_path)
    paged = ClientReader(uri, client=client, page_size=2)
    with StoreReader(tmp_path / "mlflow.db") as direct:
        assert direct.direct and [e.name for e in paged.experiments()] == [e.name for e in direct.experiments()]
        for selection in ({}, {"tag_equals": {"lgrpo.grid": "g"}}, {"tag_not_in": {"lgrpo.kind": ("eval", "warm_start")}},
                          {"tag_equals": {"lgrpo.run_id": "r1", "lgrpo.kind": "train"}}):
            ours = direct.runs([a, b], params=True, **selection)
            theirs = paged.runs([a, b], params=True, **selection)
            assert [r.info.run_id for r in ours] == [r.info.run_id for r in theirs], selection
            assert [(r.data.tags, r.data.params) for r in ours] == [(r.data.tags, r.data.params) for r in theirs]
        histories = direct.metric_histories(made, ["train/loss"])
        assert histories == paged.metric_histories(made, ["train/loss"])
        assert sorted(step for step, _, _ in histories["train/loss"][made[0]]) == [1, 2]

"""What a researcher sees while a grid runs: warm starts in the progress view, an ETA without them, a clean end."""

from __future__ import annotations

import io
import threading

from rich.console import Console

from lgrpo_bench.dispatch import progress as progress_module
from lgrpo_bench.dispatch.job import JobResult, RunJob
from lgrpo_bench.dispatch.progress import GridProgress, LogProgress, parse_progress


def test_the_latest_line_says_what_a_run_is_doing():
    assert parse_progress("nothing yet") is None
    text = ("preparing warm start tiny-s (seed 0): a cached build, or one built now (other runs wait for it)\n")
    assert parse_progress(text) == LogProgress(0, 0, None, "preparing warm start tiny-s (seed 0)")
    text += "building warm start tiny-s (seed 0) 200/1300 loss 1.234\n"
    assert parse_progress(text).describe() == "building warm start tiny-s (seed 0) 200/1300"
    text += "model tiny-s: 201,792 parameters, warm-start greedy accuracy 0.430 (built)\n"
    assert parse_progress(text) is None  # ready, not training yet
    text += "step 4/40  reward 0.375  len 12.0  0.20 s/step\n"
    assert parse_progress(text) == LogProgress(4, 40, 0.375)
    assert parse_progress(text + "building warm start tiny-m (seed 2) 100/450 loss 2.0\n").in_warm_start


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _view(tmp_path, monkeypatch, console, n_runs=2):
    from lgrpo_bench.runs.resolve import load_grid

    grid = tmp_path / "grid.yaml"
    grid.write_text(f"name: live\nbase: {{model: {{name: tiny-s}}}}\naxes: {{train.seed: {list(range(n_runs))}}}\n")
    expanded = load_grid(grid)
    jobs = [RunJob(p.run_id, str(tmp_path / p.run_id), "sqlite:///x", "e") for p in expanded.points]
    for job in jobs:
        job.layout.root.mkdir()
    clock = _Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    return GridProgress(console, expanded, jobs, skipped=0, elsewhere=0, executor="local"), jobs, clock


def test_the_eta_leaves_out_the_warm_start_and_plain_lines_name_it(tmp_path, monkeypatch):
    console = Console(force_terminal=False, record=True, width=200)
    view, jobs, clock = _view(tmp_path, monkeypatch, console)
    log = jobs[0].layout.run_log
    with view:
        log.write_text("building warm start tiny-s (seed 0) 0/1300 loss 5.0\n")
        view.update({jobs[0].run_id})
        for step in range(100, 1301, 100):  # 120 s of warm start, polled every 10 s
            clock.now += 10
            log.write_text(log.read_text() + f"building warm start tiny-s (seed 0) {step}/1300 loss 1.0\n")
            view.update({jobs[0].run_id})
        clock.now += 10
        log.write_text(log.read_text() + "model tiny-s: 201,792 parameters, warm-start greedy accuracy 0.430 (built)\n"
                       "step 10/40  reward 0.5\n")
        view.update({jobs[0].run_id})
        # 1/4 of one of two runs in 10 s of training: 70 s left, not the 1,000 s the warm start would suggest
        assert abs(view.eta_s() - 10 * (2 - 0.25) / 0.25) < 1e-6
    text = console.export_text()
    assert "building warm start tiny-s (seed 0) 500/1300" in text and "building warm start tiny-s (seed 0) 1000/1300" in text
    assert text.count("building warm start") == 3  # 0, 500 and 1,000: one line per milestone, not per poll


def test_the_live_view_shows_the_warm_start_and_ends_without_an_empty_table(tmp_path, monkeypatch):
    console = Console(force_terminal=True, record=True, width=200)
    view, jobs, clock = _view(tmp_path, monkeypatch, console, n_runs=1)
    with view:
        jobs[0].layout.run_log.write_text("building warm start tiny-s (seed 0) 200/1300 loss 1.0\n")
        view.update({jobs[0].run_id})
        assert "building warm start tiny-s (seed 0) 200/1300" in _text(view._render())
        view.finished(JobResult(jobs[0].run_id, True))
    assert "run id" not in _text(view._render(final=True)) and "done 1" in _text(view._render(final=True))


def _text(renderable) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(renderable)
    return out.getvalue()


def test_racing_runs_log_one_warm_start_run_nested_under_the_grid(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from lgrpo_bench import tracking as t
    from lgrpo_bench.tracking.record import PARENT_RUN_ENV
    from lgrpo_bench.training.run import log_warm_start

    client = t.open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = t.get_or_create_experiment(client, "race")
    parent = client.create_run(experiment_id, tags={t.TAG_KIND: t.KIND_GRID}).info.run_id
    monkeypatch.setenv(PARENT_RUN_ENV, parent)
    folder = tmp_path / "cache" / "tiny-s-seed0-steps10-v2-abc"
    folder.mkdir(parents=True)
    band = SimpleNamespace(in_band=True, greedy_acc=0.43)
    build = SimpleNamespace(path=folder, metrics={"greedy_acc": 0.43, "n_params": 10}, band=band)
    threads = [threading.Thread(target=log_warm_start, args=(t.open_client(f"sqlite:///{tmp_path / 'mlflow.db'}"),
                                                             experiment_id, "tiny-s", build, tmp_path / "runs"))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runs = client.search_runs([experiment_id], f"tags.`{t.TAG_KIND}` = '{t.KIND_WARM_START}'")
    assert len(runs) == 1 and runs[0].data.tags[t.TAG_PARENT_RUN_ID] == parent
    assert runs[0].data.tags[t.TAG_STATE] == t.STATE_DONE


def test_a_long_plan_table_shows_runs_with_news_first_and_says_what_it_left_out(tmp_path):
    """Above the row limit the table keeps the non-new runs (in grid order), fills up with new ones, and its title
    says how many rows it left out and how to see them; the limit off shows every row."""
    from lgrpo_bench.dispatch.progress import plan_table
    from lgrpo_bench.dispatch.state import RunStatus
    from lgrpo_bench.runs.resolve import load_grid

    grid = tmp_path / "g.yaml"
    grid.write_text("name: long\nbase: {model: {name: tiny-s}}\naxes: {train.seed: [0, 1, 2, 3, 4, 5]}\n")
    expanded = load_grid(grid)
    ids = [p.run_id for p in expanded.points]
    statuses = {rid: RunStatus(rid, "new") for rid in ids}
    statuses[ids[4]] = RunStatus(ids[4], "failed", "boom")
    table = plan_table(expanded, statuses, title="t", limit=3)
    console = Console(record=True, width=300, file=io.StringIO())
    console.print(table)
    text = console.export_text()
    shown = [rid for rid in ids if rid[:8] in text]
    assert shown == [ids[0], ids[1], ids[4]]
    assert "showing 3 rows, runs with news first: 3 more not shown; --all lists every run" in " ".join(text.split())
    assert table.row_count == 3 and plan_table(expanded, statuses, limit=None).row_count == 6

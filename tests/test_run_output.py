"""What ``run`` prints, and when (issue 26, item 6): its plan line before any set-up, a warm start's result line on the
terminal (not only in the run's log), and "preparing warm start" lines only from runs that build or wait."""

from __future__ import annotations

import io

from rich.console import Console
from typer.testing import CliRunner

from lgrpo_bench.cli import app


def test_run_prints_its_plan_line_before_setting_anything_up(tmp_path, monkeypatch):
    """Another ``run`` of the grid holds its lock: this one stops at the lock, after it has said what it would run
    (the line comes from the store's read alone, before the store is opened for writing and the runs are set up)."""
    from lgrpo_bench.dispatch.orchestrator import grid_lock

    monkeypatch.chdir(tmp_path)
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nbase:\n  model: {name: tiny-s}\n  train: {max_steps: 2}\n"
                    f"  tracking: {{uri: 'sqlite:///{tmp_path / 'mlflow.db'}', runs_dir: '{tmp_path / 'runs'}'}}\n"
                    "axes:\n  train.seed: [0, 1]\nexecutor: {kind: local, warm_workers: false}\n")
    with grid_lock(tmp_path / "runs", "g"):
        result = CliRunner().invoke(app, ["run", str(grid)])
    output = (result.stderr if hasattr(result, "stderr") else "") + result.output
    assert result.exit_code == 2 and "grid 'g' is already running" in output, output
    assert "grid g: 2 runs to run on local, 0 already done, 0 running elsewhere (setting up)" in result.output, output


def test_a_warm_start_result_line_reaches_the_terminal_once(tmp_path, monkeypatch):
    from test_progress import _view

    from lgrpo_bench.dispatch.job import JobResult

    result_line = ("warm start tiny-s seed 0: SFT kept step 1050 of at most 1300 (validation plateau, validation greedy "
                   "0.310); held-out greedy 0.294")
    for terminal in (False, True):
        out = io.StringIO()
        console = Console(file=out, force_terminal=terminal, width=300)
        folder = tmp_path / ("terminal" if terminal else "pipe")
        folder.mkdir()
        view, jobs, _ = _view(folder, monkeypatch, console)
        first, second = jobs
        with view:
            first.layout.run_log.write_text("building warm start tiny-s (seed 0) 1300/1300 loss 0.1\n" + result_line + "\n"
                                            "model tiny-s: 201,792 parameters, warm-start greedy accuracy 0.294 (built)\n")
            view.update({first.run_id})
            view.update({first.run_id})  # polled again: not printed twice
            second.layout.run_log.write_text(result_line + "\n")  # same warm start seen in another run's log
            view.update({first.run_id, second.run_id})
            view.finished(JobResult(first.run_id, True))
        assert out.getvalue().count("SFT kept step 1050 of at most 1300") == 1, out.getvalue()
        assert "held-out greedy 0.294" in out.getvalue()


def test_a_run_that_finishes_between_two_polls_still_shows_its_warm_start_result(tmp_path, monkeypatch):
    from test_progress import _view

    from lgrpo_bench.dispatch.job import JobResult

    out = io.StringIO()
    view, jobs, _ = _view(tmp_path, monkeypatch, Console(file=out, force_terminal=False, width=300))
    with view:
        view.update({jobs[0].run_id})
        jobs[0].layout.run_log.write_text("warm start tiny-s seed 0: SFT kept step 900 of at most 1300 (x); held-out "
                                          "greedy 0.280\n" + "step 1/40  reward 0.5\n" * 2000)  # beyond the polled tail
        view.finished(JobResult(jobs[0].run_id, True))
    assert "SFT kept step 900 of at most 1300" in out.getvalue(), out.getvalue()


def test_preparing_lines_come_only_from_runs_that_build_or_wait(warm_tiny, tiny_cache, tmp_path):
    """The cached warm start every run of a grid passes through says nothing; a build says "preparing" first."""
    from lgrpo_bench.models.tiny import build_tiny

    lines: list[str] = []
    cached = build_tiny("tiny-s", cache_dir=tiny_cache, seed=0, sft_steps=120, emit=lines.append)
    assert cached.path == warm_tiny.path and cached.metrics["cached"]
    assert not [line for line in lines if "preparing" in line], lines
    fresh: list[str] = []
    build_tiny("tiny-s", cache_dir=tmp_path / "cache", seed=1, sft_steps=3, eval_problems=4, sampled_prompts=2,
               emit=fresh.append, use_shipped=False)
    assert fresh[0].startswith("preparing warm start tiny-s (seed 1): building it"), fresh

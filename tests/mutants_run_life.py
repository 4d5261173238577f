"""Mutation check for a run's life and the store reader (issue 22): plant each plausible one-line bug, run the test
that should catch it, restore the file, report which were caught.

    python tests/mutants_run_life.py [--only SUBSTRING ...] [--list]

Same format and runner as ``tests/mutants_design_space.py``; ``tests/test_mutants_current.py`` fails when a
mutant's original text no longer occurs exactly once (a refactor moved it: update the mutant). Not collected by
pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutants_design_space import main  # noqa: E402  (the shared runner)

MUTANTS: list[tuple[str, str, str, str, list[str]]] = [
    # name, file, original, mutant, pytest arguments
    ('folder ignores experiment', 'lgrpo_bench/tracking/record.py',
     '        return cls(Path(runs_dir).expanduser().resolve() / experiment_folder(experiment) / run_id)',
     '        return cls(Path(runs_dir).expanduser().resolve() / run_id)',
     ['tests/test_run_life.py::test_one_config_in_two_experiments_keeps_two_folders_and_two_histories']),
    ('lock never waits', 'lgrpo_bench/runs/owner.py',
     '            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)\n        except BlockingIOError:',
     '            pass\n        except BlockingIOError:',
     ['tests/test_run_life.py::test_a_second_claimant_waits_for_the_run_and_finds_it_done']),
    ("grid membership by the first grid's tag", 'lgrpo_bench/reports/loader.py',
     '        return run_tags.get(t.TAG_RUN_ID) in run_ids or (all_versions and run_tags.get(t.TAG_GRID) == grid)',
     '        return run_tags.get(t.TAG_GRID) == grid and run_tags.get(t.TAG_RUN_ID) in run_ids',
     ['tests/test_run_life.py::test_a_grid_that_grows_shows_every_current_point_and_says_which_came_from_elsewhere']),
    ('health gate always passes', 'lgrpo_bench/training/health.py',
     '        return self.steps >= 1 and self.healthy_steps >= 1',
     '        return True',
     ['tests/test_run_life.py::test_non_finite_rewards_fail_the_run_and_are_counted_not_dropped']),
    ('zero steps count as learned', 'lgrpo_bench/training/health.py',
     '        return self.steps >= 1 and self.healthy_steps >= 1',
     '        return self.healthy_steps >= 0',
     ['tests/test_run_life.py::test_a_run_without_a_training_example_fails_with_the_reason']),
    ('nonfinite not counted', 'lgrpo_bench/tracking/callback.py',
     '            metrics[TRAIN_NONFINITE_VALUES] = float(self._count_nonfinite(metrics, state.global_step))',
     '            pass',
     ['tests/test_run_life.py::test_non_finite_rewards_fail_the_run_and_are_counted_not_dropped']),
    ('final model always present', 'lgrpo_bench/runs/lifecycle.py',
     '    return (final / "config.json").is_file() and any(final.glob("*.safetensors"))',
     '    return True',
     ['tests/test_run_life.py::test_a_trained_run_whose_final_model_is_gone_is_rebuilt_or_trained_again_as_plan_says']),
    ('rebuild from any checkpoint', 'lgrpo_bench/runs/lifecycle.py',
     '    if checkpoint is not None and checkpoint.name == layout.checkpoint_dir(max_steps).name:',
     '    if checkpoint is not None:',
     ['tests/test_run_life.py::test_a_trained_run_without_its_final_model_or_last_checkpoint_trains_again_from_the_newest']),
    ('reader opens read-only', 'lgrpo_bench/tracking/reader.py',
     '            self._connection = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, timeout=0.5,',
     '            self._connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=0.5,',
     ['tests/test_store_trouble.py::test_a_hot_journal_is_rolled_back_by_a_reader_that_may_write']),
    ('locked store not waited for', 'lgrpo_bench/tracking/reader.py',
     '            if "locked" not in str(error) and "busy" not in str(error):\n                raise StoreProblem(describe_sqlite_error(path, error, what)) from None',
     '            if True:\n                raise StoreProblem(describe_sqlite_error(path, error, what)) from None',
     ['tests/test_store_trouble.py::test_a_locked_store_is_waited_for_visibly_then_one_line']),
    ('main does not translate store trouble', 'lgrpo_bench/cli/common.py',
     '            if problem is None:\n                raise',
     '            if True:\n                raise',
     ['tests/test_store_trouble.py::test_a_corrupt_store_is_one_line_in_every_command']),
    ('file store not refused', 'lgrpo_bench/tracking/location.py',
     '    if scheme in ("", "file"):',
     '    if scheme in ("nothing",):',
     ['tests/test_store_trouble.py::test_a_file_store_uri_is_one_line_in_every_command']),
    ('foreign sqlite read as a store', 'lgrpo_bench/tracking/reader.py',
     '        if not required <= tables:',
     '        if False:',
     ['tests/test_store_trouble.py::test_a_foreign_sqlite_file_is_not_taken_for_a_store']),
    ('store writability checked after the runs folder', 'lgrpo_bench/dispatch/orchestrator.py',
     '            clients[uri] = _guard_store(lambda uri=uri: t.open_client(uri), expanded)',
     '            pass',
     ['tests/test_store_trouble.py::test_a_read_only_store_is_read_by_plan_and_report_and_refused_by_run']),
]


if __name__ == "__main__":
    main(MUTANTS, __doc__)

"""Optuna sweeps over run-config keys (λ init, learning rate, r, ...), run through the grid executors.

``run_sweep`` (:mod:`.runner`) asks the study for trials and runs each as an ordinary run; ``study`` holds
storage, samplers and reading a trial's value from MLflow; ``results`` shows best trials and importances
and exports the best configuration as a grid with fresh seeds.
"""

from lgrpo_bench.sweeps.results import StudyOverview, dashboard_command, export_best_grid, load_study, study_overview
from lgrpo_bench.sweeps.runner import SweepSummary, fail_stale_trials, run_sweep
from lgrpo_bench.sweeps.study import objective_value, open_study

__all__ = [
    "StudyOverview", "SweepSummary", "dashboard_command", "export_best_grid", "fail_stale_trials", "load_study",
    "objective_value", "open_study", "run_sweep", "study_overview",
]

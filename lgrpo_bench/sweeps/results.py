"""What a study found: best trials, parameter importances, and a grid that re-runs the best config with new seeds."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from lgrpo_bench.config.loading import ConfigError, set_dotted
from lgrpo_bench.sweeps.study import ATTR_BASE, ATTR_EXECUTOR, ATTR_OBJECTIVE, ATTR_SPACE

__all__ = ["StudyOverview", "dashboard_command", "export_best_grid", "load_study", "study_overview"]


@dataclass
class StudyOverview:
    """Trial counts by state, the best complete trials (best first) and parameter importances (sum 1)."""

    name: str
    direction: str
    objective: str
    counts: dict[str, int]
    best: list[optuna.trial.FrozenTrial]
    importances: dict[str, float]


def load_study(name: str, storage_url: str) -> optuna.Study:
    """Load a stored study; a clear :class:`ConfigError` listing the studies when it is not there."""
    from lgrpo_bench.tracking.studies import open_storage

    storage = open_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise ConfigError(f"study {name!r} is not in {storage_url} (studies there: {', '.join(names) or 'none'})") from None


def study_overview(study: optuna.Study, top: int = 5) -> StudyOverview:
    """Counts, the ``top`` best complete trials and (with ≥ 2 complete trials) fANOVA parameter importances
    (seeded, so the same study always shows the same importances)."""
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(1 for t in trials if t.state == state) for state in TrialState}
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    best = sorted(complete, key=lambda t: t.value, reverse=reverse)[:top]
    importances: dict[str, float] = {}
    if len(complete) >= 2 and any(len({repr(t.params.get(k)) for t in complete}) > 1 for k in complete[0].params):
        try:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            importances = dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
        except (RuntimeError, ValueError):  # e.g. every parameter constant over complete trials
            importances = {}
    objective = study.user_attrs.get(ATTR_OBJECTIVE, {}).get("metric", "value")
    return StudyOverview(study.study_name, study.direction.name.lower(), objective, counts, best, importances)


def export_best_grid(study: optuna.Study, seeds: list[int], out: str | Path, *, name: str | None = None,
                     allow_tuning_seeds: bool = False) -> dict[str, Any]:
    """Write a grid file that re-runs the best trial's config with ``seeds`` and return it as a mapping.

    Refuses seeds the study tuned with (the base's ``train.seed`` and any searched seed values): tuning
    seeds are not reporting seeds, unless ``allow_tuning_seeds``.
    """
    if not seeds:
        raise ConfigError("--seeds: give at least one seed, e.g. --seeds 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: repeated seeds in {seeds}")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(f"study {study.study_name!r} has no complete trial yet; nothing to export")
    base = study.user_attrs.get(ATTR_BASE)
    if base is None:
        raise ConfigError(f"study {study.study_name!r} was not created by `lgrpo-bench sweep` (no stored base config)")
    best = study.best_trial
    config = copy.deepcopy(base)
    for key, value in best.params.items():
        set_dotted(config, key, value)
    tuning = {int(config.get("train", {}).get("seed", 0))}
    space = study.user_attrs.get(ATTR_SPACE, {})
    if "train.seed" in space:
        entry = space["train.seed"]
        tuning |= set(entry.get("categorical") or range(entry["int"][0], entry["int"][1] + 1))
    clash = sorted(tuning & set(seeds))
    if clash and not allow_tuning_seeds:
        raise ConfigError(f"--seeds: {clash} were used while tuning study {study.study_name!r} (tuning seeds "
                          f"{sorted(tuning)}); report with fresh seeds, or pass --allow-tuning-seeds")
    config.get("train", {}).pop("seed", None)
    config.setdefault("tracking", {}).pop("grid", None)
    grid = {
        "name": name or f"{study.study_name}-best",
        "description": f"best trial {best.number} of study {study.study_name!r} "
                       f"({study.user_attrs.get(ATTR_OBJECTIVE, {}).get('metric', 'value')} = {best.value:.6g}), "
                       f"re-run with reporting seeds",
        "base": config,
        "axes": {"train.seed": list(seeds)},
    }
    executor = study.user_attrs.get(ATTR_EXECUTOR)
    if executor:
        grid["executor"] = executor
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Exported by `lgrpo-bench sweep export {study.study_name}`: best trial {best.number}, "
              f"params {best.params}\n")
    out.write_text(header + yaml.safe_dump(grid, sort_keys=False))
    return grid


def dashboard_command(storage_url: str, *, host: str = "127.0.0.1", port: int = 8080) -> list[str]:
    """argv of optuna-dashboard on the study's storage, bound to ``host`` (this machine only by default)."""
    import shutil
    import sys

    executable = Path(sys.executable).with_name("optuna-dashboard")
    program = str(executable) if executable.exists() else shutil.which("optuna-dashboard")
    if program is None:
        raise ConfigError("optuna-dashboard is not installed; pip install optuna-dashboard (it is in the .[dev] extra)")
    target = storage_url.removeprefix("journal:")
    return [program, target, "--host", host, "--port", str(port)]

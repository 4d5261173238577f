"""Do the runs of one table share their TRL settings, other than through the grid's axes? (issue 27 §3)

Each train run records every ``GRPOConfig`` field as resolved and the TRL version in the artifact
:data:`~lgrpo_bench.tracking.schema.ARTIFACT_TRL_ARGS` (:mod:`lgrpo_bench.training.trl_record`). A TRL upgrade can
change what an arm computes without any change of its config (TRL's default ``loss_type`` became ``dapo``), and a
run on other hardware resolves other settings (``bf16``); a table that mixes them compares more than its axes.

The rule (:func:`setting_differences`):

- runs with the same config (every run param except :data:`PER_RUN_PARAMS`: the seed is a replicate, not an axis)
  must have the same TRL settings, except :data:`PER_RUN_SETTINGS` (each run's own folder, name and seed). Settings
  that differ between runs whose configs differ are the axes' doing (``loss_type`` follows ``algorithm.name``);
- the TRL version (:data:`NEVER_AN_AXIS`) must be the same across the whole table: no axis changes it, and a
  version that differs between arms moves their defaults apart unseen.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lgrpo_bench.tracking import schema as t
from lgrpo_bench.tracking.artifacts import local_artifact_root

__all__ = ["NEVER_AN_AXIS", "PER_RUN_PARAMS", "PER_RUN_SETTINGS", "SettingDifference", "flat_settings",
           "load_trl_settings", "setting_differences", "trl_settings_notes"]

PER_RUN_SETTINGS = frozenset({"output_dir", "logging_dir", "run_name", "seed", "data_seed", "hub_token",
                              "hub_model_id"})
"""``GRPOConfig`` fields that are each run's own: its folder, its name, its seed."""
PER_RUN_PARAMS = frozenset({"train.seed", "run_id"})
"""Run params that are not axes of a comparison: the seed (replicates) and the run id (a hash of the config)."""
NEVER_AN_AXIS = frozenset({"trl_version"})
"""Settings no config key changes: compared across the whole table."""
ABSENT = "(absent)"
"""How a setting one run has and another lacks (another TRL version) is shown."""


@dataclass(frozen=True)
class SettingDifference:
    """A TRL setting the runs of a table differ in, not through the grid's axes: ``values`` counts runs per value."""

    key: str
    values: dict[str, int]

    def describe(self) -> str:
        counts = ", ".join(f"{value} in {n} run{'' if n == 1 else 's'}" for value, n in
                           sorted(self.values.items(), key=lambda item: (-item[1], item[0])))
        return f"{self.key} ({counts})"


def flat_settings(record: Mapping[str, Any]) -> dict[str, str]:
    """One artifact's settings as comparable strings: ``trl_version`` and every ``args`` field (JSON of its value)
    except :data:`PER_RUN_SETTINGS`."""
    args = record.get("args") or {}
    flat = {key: json.dumps(value, sort_keys=True, default=str) for key, value in args.items()
            if key not in PER_RUN_SETTINGS}
    flat["trl_version"] = str(record.get("trl_version", ABSENT))
    return flat


def setting_differences(runs: Sequence[tuple[Mapping[str, str], Mapping[str, str]]]) -> list[SettingDifference]:
    """The settings the runs differ in other than through their configs (see the module docstring), sorted by key.

    ``runs``: (run params, :func:`flat_settings`) of each run that recorded its settings."""
    groups: dict[tuple, list[Mapping[str, str]]] = {}
    for params, settings in runs:
        config = tuple(sorted((key, value) for key, value in params.items() if key not in PER_RUN_PARAMS))
        groups.setdefault(config, []).append(settings)
    keys = sorted({key for _, settings in runs for key in settings})
    differences = []
    for key in keys:
        if key in NEVER_AN_AXIS:
            unexplained = len({settings.get(key, ABSENT) for _, settings in runs}) > 1
        else:
            unexplained = any(len({settings.get(key, ABSENT) for settings in group}) > 1 for group in groups.values())
        if unexplained:
            differences.append(SettingDifference(key, dict(Counter(settings.get(key, ABSENT) for _, settings in runs))))
    return differences


def load_trl_settings(store: Any, runs: Sequence[Any]) -> dict[str, dict[str, Any] | None]:
    """``{MLflow run id: the run's trl_args.json, or None when it has none}`` for report runs (:class:`~.loader
    .RunRecord`): read in place from a local artifact folder, downloaded with MLflow otherwise."""
    found: dict[str, dict[str, Any] | None] = {}
    with tempfile.TemporaryDirectory(prefix="lgrpo-trl-args-") as scratch:
        for run in runs:
            run_id = run.mlflow_run_id
            root = local_artifact_root(run.artifact_uris.get(run_id))
            try:
                if root is not None:
                    path = root / t.ARTIFACT_TRL_ARGS
                else:
                    path = Path(store.mlflow_client().download_artifacts(run_id, t.ARTIFACT_TRL_ARGS, scratch))
                found[run_id] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
            except Exception:  # noqa: BLE001 - a run without the artifact (or unreadable) is counted as such
                found[run_id] = None
    return found


def trl_settings_notes(runs: Sequence[Any], records: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    """The report's notes: a warning naming each setting of :func:`setting_differences`, and, when some runs recorded
    their settings and others did not (trained before settings were recorded), how many were not compared."""
    recorded = [(run.params, flat_settings(records[run.mlflow_run_id])) for run in runs
                if records.get(run.mlflow_run_id) is not None]
    notes = []
    differences = setting_differences(recorded)
    if differences:
        notes.append("warning: the runs of this table differ in TRL settings that the grid's axes do not explain: "
                     + "; ".join(d.describe() for d in differences)
                     + f" (each run's {t.ARTIFACT_TRL_ARGS} artifact holds every setting)")
    missing = len(runs) - len(recorded)
    if missing and recorded:  # a store of runs that all predate the record stays quiet
        notes.append(f"{missing} of the {len(runs)} runs have no {t.ARTIFACT_TRL_ARGS} artifact (trained before TRL "
                     "settings were recorded): their TRL settings are not compared")
    return notes

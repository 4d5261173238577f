"""The record of a run's resolved TRL settings (the artifact :data:`~lgrpo_bench.tracking.schema.ARTIFACT_TRL_ARGS`).

TRL's defaults move between versions (its default ``loss_type`` became ``dapo``; the vLLM importance-sampling
correction is on by default), so what an arm named "grpo" computes depends on the TRL it ran with. Every field of the
``GRPOConfig`` the trainer used, as resolved, and the TRL version are recorded on the run; ``lgrpo-bench report``
compares them across the runs of a table (:mod:`lgrpo_bench.reports.trl_settings`)."""

from __future__ import annotations

import json
from typing import Any


def resolved_trl_settings(args: Any) -> dict[str, Any]:
    """``{"trl_version": trl.__version__, "args": args.to_dict()}``: every ``GRPOConfig`` field as the trainer holds
    it (``TrainingArguments.to_dict`` masks tokens and writes enums as their values)."""
    import trl

    return {"trl_version": trl.__version__, "args": args.to_dict()}


def trl_settings_json(args: Any) -> str:
    """:func:`resolved_trl_settings` as indented, key-sorted JSON (values JSON cannot hold as their ``str``)."""
    return json.dumps(resolved_trl_settings(args), indent=1, sort_keys=True, default=str)

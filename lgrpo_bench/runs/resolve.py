"""Resolving a run: the one place a config becomes a run id and a run folder.

Whoever resolves a config (the grid orchestrator, a sweep, ``lgrpo-bench train``/``eval --config``) calls
:func:`prepare_run` once: the config gets an absolute ``runs_dir`` and tracking URI (neither is part of the run
id, so a run means the same thing from any working directory), its run id is computed, and the resolved config
is written to ``<runs_dir>/<run_id>/config.yaml``. The run's processes read it back with :func:`read_resolved`
and take the run id from the folder's name: nothing downstream re-derives, re-hashes or re-writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lgrpo_bench.config import ConfigError, RunConfig, build_run_config, dump_yaml, read_yaml, run_id
from lgrpo_bench.tracking.record import CONFIG_FILE, RunLayout

__all__ = ["PreparedRun", "absolute_locations", "prepare_run", "read_resolved"]


@dataclass(frozen=True)
class PreparedRun:
    """A resolved config, its run id and its folder."""

    config: RunConfig
    run_id: str
    layout: RunLayout


def absolute_locations(config: RunConfig) -> RunConfig:
    """A copy of ``config`` with an absolute ``tracking.runs_dir`` and a resolved ``tracking.uri``."""
    from lgrpo_bench.tracking.store import resolve_tracking_uri

    resolved = config.model_copy(deep=True)
    resolved.tracking.uri = resolve_tracking_uri(resolved.tracking.uri)
    resolved.tracking.runs_dir = str(Path(resolved.tracking.runs_dir).expanduser().resolve())
    return resolved


def prepare_run(config: RunConfig, *, rid: str | None = None, write: bool = True) -> PreparedRun:
    """Resolve ``config`` (see the module docstring); write its ``config.yaml`` when ``write``.

    ``rid``: the run id when the caller computed it already (a grid point's); computed here otherwise.
    """
    resolved = absolute_locations(config)
    rid = rid or run_id(resolved)
    layout = RunLayout.of(resolved.tracking.runs_dir, rid)
    if write:
        layout.write_config(dump_yaml(resolved))
    return PreparedRun(resolved, rid, layout)


def read_resolved(run_dir: str | Path) -> tuple[RunConfig, str]:
    """The resolved config written by :func:`prepare_run` into ``run_dir``, and the run id (the folder's name)."""
    layout = RunLayout(Path(run_dir).expanduser().resolve())
    if not layout.config_file.is_file():
        raise ConfigError(f"{layout.root}: no {CONFIG_FILE}; this is not a prepared run folder")
    return build_run_config(read_yaml(layout.config_file), str(layout.config_file)), layout.run_id

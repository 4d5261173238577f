"""Typed configs (pydantic), safe YAML loading, overrides and the run-identity hash: the floor every package stands on.

Nothing here imports torch, transformers or another lgrpo_bench package but :mod:`lgrpo_bench.algorithms` (pure
Python where it is read here): the ``algorithm`` section's fields are built from the hyperparameters each axis value
declares in its module. Checks against the registries (algorithm
presets and axes, model presets, benchmarks, templates) and the run id itself need those registries, so they come
from the resolve step: load run configs, grids and sweeps through :mod:`lgrpo_bench.runs.resolve`
(``load_run``, ``load_grid``, ``load_sweep``, ``run_id``), which passes its checker to the functions here.
"""

from lgrpo_bench.config.grid import ExpandedGrid, GridConfig, GridPoint
from lgrpo_bench.config.loading import (
    Checker,
    ConfigError,
    ConfigProblem,
    build_run_config,
    dump_yaml,
    identity_hash,
    identity_payload,
    known_keys,
    load_run_config,
    parse_override,
    read_yaml,
    seed_identity_hashes,
    set_dotted,
)
from lgrpo_bench.config.schema import (
    AlgorithmConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    TaskConfig,
    TrackingConfig,
    TrainConfig,
)

__all__ = [
    "AlgorithmConfig", "Checker", "ConfigError", "ConfigProblem", "EvalConfig", "ExpandedGrid", "GridConfig",
    "GridPoint", "ModelConfig", "RunConfig", "TaskConfig", "TrackingConfig", "TrainConfig", "build_run_config",
    "dump_yaml", "identity_hash", "identity_payload", "known_keys", "load_run_config", "parse_override", "read_yaml",
    "seed_identity_hashes", "set_dotted",
]

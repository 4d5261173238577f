"""Typed configs (pydantic), safe YAML loading, overrides and run identity."""

from lgrpo_bench.config.grid import ExpandedGrid, GridConfig, GridPoint, load_grid
from lgrpo_bench.config.loading import (
    ConfigError,
    build_run_config,
    dump_yaml,
    identity_payload,
    known_keys,
    load_run_config,
    parse_override,
    read_yaml,
    run_id,
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
    "AlgorithmConfig", "ConfigError", "EvalConfig", "ExpandedGrid", "GridConfig", "GridPoint", "ModelConfig",
    "RunConfig", "TaskConfig", "TrackingConfig", "TrainConfig", "build_run_config", "dump_yaml", "identity_payload", "known_keys",
    "load_grid", "load_run_config", "parse_override", "read_yaml", "run_id", "set_dotted",
]

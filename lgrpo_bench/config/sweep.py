"""Sweep files: a base run config, a search space on dotted keys, an objective, and where trials run.

A sweep file::

    name: lambda-lr                      # the Optuna study and the MLflow parent run (lgrpo.kind = study)
    base: ../experiments/tiny_lambda.yaml   # or an inline run-config mapping (as in a grid)
    overrides: {train.max_steps: 30}
    space:
      algorithm.lam_init: {float: [-1.0, 1.0]}
      train.learning_rate: {float: [1.0e-5, 3.0e-4], log: true}
      algorithm.r: {categorical: [0.0625, 0.1111, 0.25]}
    objective: {metric: eval/arith/acc, direction: maximize}
    n_trials: 8
    parallel: 2
    sampler: {kind: tpe, seed: 0}
    pruner: {kind: median, metric: train/reward_mean, every: 10}
    storage: null                        # sqlite:///<cwd>/optuna.db; any RDB URL; journal:PATH
    executor: {kind: local, slots: 2}

:func:`load_sweep` validates everything before a trial starts (each problem a :class:`ConfigError` naming
the file and the key): unknown keys, numbers that are not finite (bounds, steps, categories, objective
and pruner settings), a space key that is not a run-config value, empty or log ranges with a
non-positive bound, values the run config refuses (both bounds and every category are tried), an objective
that is neither ``eval/<benchmark>/<metric>`` of a configured benchmark nor ``train/<metric>``, a grid
sampler on a continuous range, and SQLite storage on a network filesystem (use ``journal:PATH`` there).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lgrpo_bench.config.grid import (
    ExecutorConfig,
    LocalExecutorConfig,
    base_mapping,
    check_run_key,
    run_config_keys,
)
from lgrpo_bench.config.loading import (
    Checker,
    ConfigError,
    build_run_config,
    error_message,
    no_checks,
    set_dotted,
    validate_file,
)
from lgrpo_bench.config.schema import SEED_MAX, RunConfig

__all__ = [
    "NETWORK_FILESYSTEMS",
    "NETWORK_PATHS_ENV",
    "LoadedSweep",
    "ObjectiveConfig",
    "PrunerConfig",
    "SamplerConfig",
    "SpaceEntry",
    "SweepConfig",
    "load_sweep",
    "network_filesystem",
    "resolve_storage",
    "trial_run_config",
]

NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph",
                                 "fuse.sshfs", "9p", "afs", "glusterfs", "fuse.glusterfs"})
"""Filesystem types (from /proc/mounts) on which SQLite's file locking is unreliable."""
NETWORK_PATHS_ENV = "LGRPO_NETWORK_FS_PATHS"
"""``os.pathsep``-separated folders to treat as network filesystems (where mount detection cannot tell)."""
DEFAULT_STORAGE_FILE = "optuna.db"

Scalar = bool | int | float | str | None


class _Strict(BaseModel):
    """Unknown keys are errors, and so is a float that is not finite (inf, -inf, nan)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SpaceEntry(BaseModel):
    """One searched key: a float range, an int range or a list of categories (exactly one of them)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    float_range: tuple[float, float] | None = Field(None, alias="float", description="[low, high] of a float parameter")
    int_range: tuple[int, int] | None = Field(None, alias="int", description="[low, high] of an integer parameter (both included)")
    categorical: list[Scalar] | None = Field(None, description="The values to choose from")
    log: bool = Field(False, description="Sample on a log scale (ranges only; the low bound must be > 0)")
    step: float | None = Field(None, description="Discretisation step of a range (int default 1; float default continuous)")

    @model_validator(mode="after")
    def _one_kind(self) -> SpaceEntry:
        kinds = [name for name, value in (("float", self.float_range), ("int", self.int_range),
                                          ("categorical", self.categorical)) if value is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of float, int, categorical (got {', '.join(kinds) or 'none'})")
        if self.categorical is not None:
            if not self.categorical:
                raise ValueError("categorical: empty list")
            if len(set(map(repr, self.categorical))) != len(self.categorical):
                raise ValueError(f"categorical: duplicate values in {self.categorical}")
            if self.log or self.step is not None:
                raise ValueError("log and step apply to float and int ranges, not to categorical")
            return self
        low, high = self.bounds
        if not low < high:
            raise ValueError(f"empty range [{low}, {high}]: the low bound must be below the high bound")
        if self.log and low <= 0:
            raise ValueError(f"log range [{low}, {high}]: the low bound must be > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step {self.step}: must be > 0")
        if self.int_range is not None and self.step is not None and self.step != int(self.step):
            raise ValueError(f"int range: step {self.step} is not a whole number")
        return self

    @property
    def kind(self) -> Literal["float", "int", "categorical"]:
        return "categorical" if self.categorical is not None else "int" if self.int_range is not None else "float"

    @property
    def bounds(self) -> tuple[float, float]:
        return self.float_range if self.float_range is not None else self.int_range  # type: ignore[return-value]

    def probe_values(self) -> list[Any]:
        """Values the run config must accept: both bounds of a range, or every category."""
        return list(self.categorical) if self.categorical is not None else list(self.bounds)

    def grid_values(self) -> list[Any] | None:
        """Every value a grid sampler visits; None for a continuous float range."""
        if self.categorical is not None:
            return list(self.categorical)
        low, high = self.bounds
        if self.int_range is not None:
            step = int(self.step or 1)
            return list(range(int(low), int(high) + 1, step))
        if self.step is None:
            return None
        count = int(round((high - low) / self.step)) + 1
        return [low + i * self.step for i in range(count) if low + i * self.step <= high + 1e-12]


class ObjectiveConfig(_Strict):
    """What a trial's value is, read from its MLflow run once the run is done."""

    metric: str = Field(..., description="eval/<benchmark>/<metric> (final value), or train/<metric> (mean of its last "
                                         "`last_k` logged values)")
    direction: Literal["maximize", "minimize"] = Field("maximize", description="Optimisation direction")
    last_k: int = Field(5, ge=1, description="train/ metrics: how many of the last logged values are averaged")

    @model_validator(mode="after")
    def _metric_shape(self) -> ObjectiveConfig:
        parts = self.metric.split("/")
        if parts[0] == "eval" and (len(parts) < 3 or not all(parts)):
            raise ValueError(f"metric {self.metric!r}: expected eval/<benchmark>/<metric>, e.g. eval/arith/acc")
        if parts[0] == "train" and (len(parts) < 2 or not all(parts)):
            raise ValueError(f"metric {self.metric!r}: expected train/<metric>, e.g. train/reward_mean")
        if parts[0] not in ("eval", "train"):
            raise ValueError(f"metric {self.metric!r}: must start with eval/ or train/")
        return self


class SamplerConfig(_Strict):
    """How trials' parameters are chosen (every sampler is seeded)."""

    kind: Literal["tpe", "random", "grid"] = Field("tpe", description="tpe (default), random, or grid (every combination)")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Sampler seed (tuning seed; not a reporting seed; 0 … 2³² − 1, "
                                                          "what Optuna's numpy generator accepts)")
    n_startup_trials: int = Field(4, ge=0, description="tpe: random trials before the model-based ones")


class PrunerConfig(_Strict):
    """Stopping unpromising trials early from an intermediate training metric."""

    kind: Literal["none", "median", "successive_halving"] = Field("none", description="none, median or successive_halving")
    metric: str = Field("train/reward_mean", description="Intermediate value reported to Optuna: a train/ metric "
                                                         "(train/heldout_acc when held-out evaluation is on)")
    every: int = Field(10, ge=1, description="Report (and maybe prune) every this many optimizer steps")
    n_startup_trials: int = Field(2, ge=0, description="median: trials that are never pruned")
    n_warmup_steps: int = Field(0, ge=0, description="median: steps before pruning is considered")
    min_resource: int = Field(1, ge=1, description="successive_halving: minimum steps of a trial (in reports)")
    reduction_factor: int = Field(3, ge=2, description="successive_halving: reduction factor")

    @model_validator(mode="after")
    def _metric_is_train(self) -> PrunerConfig:
        if not self.metric.startswith("train/") or self.metric == "train/":
            raise ValueError(f"metric {self.metric!r}: intermediate values come from training; use a train/ metric")
        return self


class SweepConfig(_Strict):
    """A sweep file (see the module docstring)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Study name (Optuna) and the MLflow parent run's name")
    description: str = Field("", description="Free text")
    base: dict[str, Any] | str = Field({}, description="Run config every trial starts from: a mapping, or a run YAML path "
                                                       "relative to the sweep file")
    overrides: dict[str, Any] = Field({}, description="Dotted keys set on top of base")
    space: dict[str, SpaceEntry] = Field(..., description="Dotted run-config key → distribution")
    objective: ObjectiveConfig = Field(..., description="The value each trial optimises")
    n_trials: int = Field(..., ge=1, description="Finished trials (complete or pruned) the study must reach")
    parallel: int = Field(1, ge=1, description="Trials running at once")
    sampler: SamplerConfig = Field(default_factory=SamplerConfig, description="Parameter sampler")
    pruner: PrunerConfig = Field(default_factory=PrunerConfig, description="Early stopping of trials")
    storage: str | None = Field(None, description="Optuna storage: None = sqlite:///<cwd>/optuna.db; an RDB URL "
                                                  "(sqlite:///..., postgresql://..., mysql://...); journal:PATH for a "
                                                  "journal file (shared/network filesystems)")
    max_retries: int = Field(2, ge=0, description="Times a failed or interrupted trial is retried with the same parameters")
    heartbeat_interval: int = Field(30, ge=1, description="Seconds between heartbeats of running trials (RDB storage)")
    grace_period: int = Field(120, ge=2, description="Seconds without a heartbeat after which a running trial is stale")
    executor: ExecutorConfig = Field(default_factory=LocalExecutorConfig, description="Where trials run: local, ray or slurm "
                                                                                      "(as in a grid)")

    @model_validator(mode="after")
    def _heartbeat(self) -> SweepConfig:
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(f"grace_period ({self.grace_period} s) must exceed heartbeat_interval ({self.heartbeat_interval} s)")
        return self


@dataclass
class LoadedSweep:
    """A validated sweep: its file, config, the base run-config mapping and the resolved storage URL."""

    path: Path
    sweep: SweepConfig
    base: dict[str, Any]
    storage: str


def trial_run_config(loaded: LoadedSweep, params: dict[str, Any], check: Checker = no_checks) -> RunConfig:
    """Base + overrides (already in ``loaded.base``) + a trial's parameters, validated and ``check``-ed."""
    data = copy.deepcopy(loaded.base)
    for key, value in params.items():
        set_dotted(data, key, value)
    return build_run_config(data, f"{loaded.path} (trial {params})", check)


def network_filesystem(path: str | Path, mounts_file: str = "/proc/mounts") -> str | None:
    """The network filesystem type holding ``path`` ("nfs4", ...), or None for a local one.

    The longest mount point that contains the path decides; folders listed in ``$LGRPO_NETWORK_FS_PATHS``
    count as network filesystems (reported as ``"flagged"``).
    """
    target = Path(path).expanduser().resolve()
    for flagged in filter(None, os.environ.get(NETWORK_PATHS_ENV, "").split(os.pathsep)):
        flagged_path = Path(flagged).expanduser().resolve()
        if target == flagged_path or flagged_path in target.parents:
            return "flagged"
    best, fs_type = "", None
    try:
        lines = Path(mounts_file).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = str(target) == mount_point or str(target).startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, fs_type = mount_point, fields[2]
    return fs_type if fs_type in NETWORK_FILESYSTEMS else None


def resolve_storage(storage: str | None, source: str = "<sweep>") -> str:
    """The storage URL to open: the default SQLite file, an RDB URL, or ``journal:<absolute path>``.

    Refuses SQLite on a network filesystem (its locking corrupts the study there).
    """
    if storage is None:
        storage = f"sqlite:///{Path.cwd() / DEFAULT_STORAGE_FILE}"
    if storage.startswith("journal:"):
        path = Path(storage.removeprefix("journal:")).expanduser()
        if not str(path):
            raise ConfigError(f"{source}: storage: journal: needs a file path, e.g. journal:/shared/optuna.journal")
        return f"journal:{path.resolve()}"
    scheme = storage.split(":", 1)[0].split("+", 1)[0]
    if "://" not in storage or scheme not in ("sqlite", "postgresql", "mysql", "oracle", "mssql"):
        raise ConfigError(f"{source}: storage: {storage!r} is not an RDB URL (sqlite:///PATH, postgresql://..., "
                          "mysql://...) or journal:PATH")
    if scheme == "sqlite":
        file = storage.split(":///", 1)[1] if ":///" in storage else ""
        if not file or file == ":memory:":
            raise ConfigError(f"{source}: storage: {storage!r}: a sweep needs a file that outlives the process")
        folder = Path(file).expanduser().resolve().parent
        fs_type = network_filesystem(folder)
        if fs_type:
            raise ConfigError(f"{source}: storage: SQLite file {file} is on a network filesystem ({fs_type}); SQLite's "
                              "locking corrupts databases there. Use storage: journal:PATH (Optuna's journal file) or "
                              "an RDB server URL")
    return storage


def load_sweep(path: str | Path, check: Checker = no_checks) -> LoadedSweep:
    """Read and validate a sweep file (see the module docstring); :class:`ConfigError` on any problem.

    ``check`` (the resolve step's registry checks) runs on the base config and on every probe of the space."""
    path = Path(path)
    sweep = validate_file(path, SweepConfig)
    source = str(path)
    base, _ = base_mapping(sweep.base, path)
    leaves, sections = run_config_keys()
    for key, value in sweep.overrides.items():
        check_run_key(key, f"overrides.{key}", source, leaves, sections)
        set_dotted(base, key, value)
    if not sweep.space:
        raise ConfigError(f"{source}: space: empty; give at least one dotted key to search")
    for key in sweep.space:
        check_run_key(key, f"space.{key}", source, leaves, sections)
    config = build_run_config(base, f"{source}: base", check)
    for key, entry in sweep.space.items():
        for value in entry.probe_values():
            probe = copy.deepcopy(base)
            set_dotted(probe, key, value)
            try:
                problems = check(RunConfig.model_validate(probe))
            except ValidationError as err:
                raise ConfigError(f"{source}: space.{key}: value {value!r} is refused by the run config: "
                                  f"{error_message(err.errors()[0])}") from None
            if problems:
                raise ConfigError(f"{source}: space.{key}: value {value!r} is refused by the run config: "
                                  f"{problems[0].message}")
        if sweep.sampler.kind == "grid" and entry.grid_values() is None:
            raise ConfigError(f"{source}: space.{key}: the grid sampler needs discrete values; give a step or categorical")
    _check_objective(sweep, config, source)
    storage = resolve_storage(sweep.storage, source)
    return LoadedSweep(path, sweep, base, storage)


def _check_objective(sweep: SweepConfig, config: RunConfig, source: str) -> None:
    metric = sweep.objective.metric
    if metric.startswith("eval/"):
        benchmark = metric.split("/")[1]
        configured = config.eval.benchmarks
        if benchmark not in configured:
            raise ConfigError(f"{source}: objective.metric: {metric!r} needs benchmark {benchmark!r} in eval.benchmarks "
                              f"of the base config (configured: {', '.join(configured) or 'none'})")
    pruned_metric = sweep.pruner.metric
    if sweep.pruner.kind != "none" and pruned_metric == "train/heldout_acc" and not config.train.heldout_every:
        raise ConfigError(f"{source}: pruner.metric: train/heldout_acc needs train.heldout_every > 0 in the base config")

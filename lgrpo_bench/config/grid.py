"""Experiment grids: a base run config × axes (cartesian product) ± include/exclude, and where to run them.

A grid file::

    name: quickstart
    base: {...}                  # a run config mapping, or a path to a run YAML (relative to the grid file)
    overrides: {train.max_steps: 20}          # dotted keys applied on top of base
    axes:                                      # dotted key → values; the last axis varies fastest
      algorithm.name: [grpo, dapo, dr_grpo, lambda_grpo]
      train.seed: [0, 1, 2]
    exclude: [{algorithm.name: grpo, train.seed: 2}]    # drop product points matching every key given
    include: [{algorithm.name: dapo_full, train.seed: 0}]  # extra points (base + these keys)
    executor: {kind: local, slots: 2}

:func:`load_grid` validates the whole grid before anything runs and returns every point as a validated
:class:`~lgrpo_bench.config.schema.RunConfig` with its run id. Every problem is a :class:`ConfigError`
naming the file, the key path and the bad value (the CLI turns it into exit code 2): malformed YAML,
duplicate keys, numbers that are not finite (anywhere in the file, exclude entries and executor settings included),
unknown keys, an axis on a key that does not exist, values of the wrong type, more points than
``max_points`` (counted from the axis lengths before anything is expanded), an empty product, duplicate points
(equal run ids), and whatever the caller's ``check`` finds (unknown algorithms, models, benchmarks: the registries
live above this package; ``lgrpo_bench.runs.resolve.load_grid`` passes their checks and the run-id function).
"""

from __future__ import annotations

import copy
import difflib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lgrpo_bench.config.findings import FindingConfig, check_findings

from lgrpo_bench.config.loading import (
    Checker,
    ConfigError,
    ConfigProblem,
    echo,
    error_message,
    known_keys,
    no_checks,
    read_yaml,
    set_dotted,
    validate_file,
)
from lgrpo_bench.config.schema import IDENTITY_EXCLUDED, RunConfig

__all__ = [
    "ExpandedGrid",
    "GridConfig",
    "GridPoint",
    "LocalExecutorConfig",
    "RayExecutorConfig",
    "SlurmExecutorConfig",
    "expand_grid",
    "load_grid",
    "base_mapping",
    "check_run_key",
    "parse_slurm_time",
    "run_config_keys",
    "DEFAULT_MAX_POINTS",
]

MAX_ERRORS_SHOWN = 20
DEFAULT_MAX_POINTS = 20_000
"""The largest grid ``plan``/``run`` accept unless ``--max-points`` says more (expanding and checking 10,000 points
takes about a second; 10⁵ seeds took minutes and a gigabyte before this limit existed)."""
SEED_KEY = "train.seed"
"""The replicate axis: no schema validator, registry check or algorithm resolution reads it, so a grid's points that
differ only in it are checked once (:func:`expand_grid`)."""
Identify = Callable[[RunConfig], Callable[[int], str]]
"""``identify(config)``: the function ``seed ↦ run id`` of the configs equal to ``config`` but for ``train.seed``."""


class _Strict(BaseModel):
    """Unknown keys are errors, and so is a float that is not finite (inf, -inf, nan)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _ExecutorBase(_Strict):
    python: str | None = Field(
        None, description="Python interpreter that runs each run's commands; None = the interpreter running the grid "
        "(set it when workers have lgrpo-bench installed elsewhere)",
    )
    env: dict[str, str] = Field({}, description="Extra environment variables of every run (e.g. HF_HOME, OMP_NUM_THREADS)")
    accelerate_config: str | None = Field(
        None, description="Multi-GPU runs only: an `accelerate config` file (DeepSpeed/FSDP, mixed precision) passed "
        "to `accelerate launch --config_file`; None = plain data parallelism over the run's GPUs",
    )


class LocalExecutorConfig(_ExecutorBase):
    """Runs on this machine: ``slots`` subprocesses at once, GPUs handed out through ``CUDA_VISIBLE_DEVICES``."""

    kind: Literal["local"] = Field("local", description="Run on this machine")
    slots: int = Field(1, ge=1, description="Runs at once (each a subprocess with its own log file)")
    gpus_per_run: int = Field(
        0, ge=0, description="GPUs each run needs (0 = CPU: the run sees no GPU; >1 = launched with `accelerate launch`)",
    )
    gpus: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="GPU indices the grid may use, each once; None = every visible GPU ($CUDA_VISIBLE_DEVICES or "
        "nvidia-smi)",
    )
    share_gpus: bool = Field(False, description="Let runs share a GPU (small models); off = each GPU serves one run at a time")
    warm_workers: bool = Field(True, description="Fork each run from a process that has imported torch, TRL, lm-eval and "
                               "MLflow once (lgrpo_bench.runs.warm): the grid's own, or the shared one $LGRPO_WARM_SERVER "
                               "names (lgrpo_bench.runs.server); false = a fresh interpreter per run")
    runs_per_gpu: int = Field(2, ge=1, description="With share_gpus: at most this many runs on one GPU")

    @field_validator("gpus")
    @classmethod
    def _gpus_once(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("each GPU index may be listed once (share_gpus lets runs share a GPU)")
        return value


class RayExecutorConfig(_ExecutorBase):
    """Each run is a Ray task with its resource request, on an existing cluster or a local Ray started for the grid."""

    kind: Literal["ray"] = Field("ray", description="Run as Ray tasks")
    address: str | None = Field(
        None, description="auto (the cluster of $RAY_ADDRESS or a running local one), ray://host:10001, host:6379, "
        "or None = start a local Ray for this grid and stop it at the end",
    )
    num_cpus_per_run: float = Field(1.0, gt=0, description="CPUs each run's task reserves")
    num_gpus_per_run: float = Field(
        0.0, ge=0, description="GPUs each run's task reserves (Ray sets CUDA_VISIBLE_DEVICES; fractions share a GPU; "
        ">1 = `accelerate launch` on that many GPUs)",
    )
    max_concurrent: int | None = Field(None, ge=1, description="Runs in flight at once; None = as many as the cluster's resources allow")
    warm_workers: bool = Field(True, description="Fork each run from a process of its Ray worker that has imported torch, "
                               "TRL, lm-eval and MLflow once (reused by the worker's later runs); false = a fresh "
                               "interpreter per run")
    local_num_cpus: int | None = Field(None, ge=1, description="Local Ray only: CPUs it may use (None = all)")
    local_num_gpus: int | None = Field(None, ge=0, description="Local Ray only: GPUs it may use (None = all visible)")
    runtime_env: dict[str, Any] | None = Field(None, description="Ray runtime_env of the tasks (env_vars, working_dir, ...)")

    @field_validator("num_gpus_per_run")
    @classmethod
    def _whole_gpus_above_one(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError("more than one GPU per run must be a whole number")
        return value


def parse_slurm_time(value: int | str) -> int:
    """SLURM time limit → minutes: ``90``, ``"90"``, ``"MM:SS"``, ``"HH:MM:SS"``, ``"D-HH"``, ``"D-HH:MM"``, ``"D-HH:MM:SS"``."""
    if isinstance(value, bool):
        raise ValueError("expected minutes or [D-]HH:MM:SS")
    if isinstance(value, int):
        minutes = value
    else:
        text = str(value).strip()
        match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
        if not match:
            raise ValueError("expected minutes or [D-]HH:MM:SS")
        days, first, second, third = match.groups()
        parts = [int(p) for p in (first, second, third) if p is not None]
        if days is not None:  # D-HH[:MM[:SS]]
            hours, mins, secs = (parts + [0, 0])[:3]
            minutes = int(days) * 1440 + hours * 60 + mins + (1 if secs else 0)
        elif len(parts) == 1:  # MM
            minutes = parts[0]
        elif len(parts) == 2:  # MM:SS
            minutes = parts[0] + (1 if parts[1] else 0)
        else:  # HH:MM:SS
            minutes = parts[0] * 60 + parts[1] + (1 if parts[2] else 0)
    if minutes < 1:
        raise ValueError("the time limit must be at least one minute")
    return minutes


class SlurmExecutorConfig(_ExecutorBase):
    """Each run is one task of a SLURM job array submitted through submitit (one node per run)."""

    kind: Literal["slurm"] = Field("slurm", description="Submit to SLURM through submitit")
    cluster: Literal["slurm", "local", "debug"] = Field(
        "slurm", description="submitit backend: slurm = sbatch; local = each job a local process through submitit's "
        "LocalExecutor (tests, trying the job path without a cluster); debug = in this process",
    )
    partition: str | None = Field(None, description="sbatch --partition")
    time: int | str = Field("24:00:00", description="Time limit of one run: minutes or [D-]HH:MM:SS (sbatch --time)")
    gpus_per_node: int = Field(0, ge=0, description="GPUs of each run (sbatch --gpus-per-node; >1 = `accelerate launch`)")
    cpus_per_task: int = Field(8, ge=1, description="CPUs of each run (sbatch --cpus-per-task)")
    mem: str | None = Field(None, description="Memory of each run, e.g. 64G (sbatch --mem); None = the partition's default")
    setup: list[str] = Field([], description="Shell lines run before each run (module load ..., source .venv/bin/activate)")
    array_parallelism: int = Field(64, ge=1, description="Runs of the job array running at once (sbatch --array=0-N%K)")
    folder: str = Field("runs/_submitit", description="submitit's folder (job scripts, pickles, SLURM logs), relative to the working directory")
    account: str | None = Field(None, description="sbatch --account")
    qos: str | None = Field(None, description="sbatch --qos")
    constraint: str | None = Field(None, description="sbatch --constraint (e.g. a GPU type)")
    job_name: str | None = Field(None, description="sbatch --job-name; None = lgrpo-<grid name>")
    additional: dict[str, str | int] = Field({}, description="Other sbatch options, e.g. {mail-type: END}")

    @field_validator("time")
    @classmethod
    def _time_format(cls, value: int | str) -> int | str:
        parse_slurm_time(value)
        return value

    @property
    def timeout_min(self) -> int:
        return parse_slurm_time(self.time)


ExecutorConfig = Annotated[
    Union[LocalExecutorConfig, RayExecutorConfig, SlurmExecutorConfig], Field(discriminator="kind"),
]


class GridConfig(_Strict):
    """A grid file: which runs (base × axes ± include/exclude) and where they run (executor)."""

    name: str = Field(
        ..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100,
        description="Grid name (at most 100 characters): tag lgrpo.grid of every run and name of the grid's parent run in MLflow",
    )
    description: str = Field("", description="Free text shown by `lgrpo-bench plan`")
    base: dict[str, Any] | str = Field(
        {}, description="The run config every point starts from: a mapping as in a run YAML, or the path of a run "
        "YAML relative to the grid file",
    )
    overrides: dict[str, Any] = Field({}, description="Dotted keys set on top of base (e.g. train.max_steps: 20)")
    axes: dict[str, list[Any]] = Field(
        {}, description="Dotted run-config key → list of values; the points are their cartesian product "
        "(in the order written, the last axis varying fastest)",
    )
    include: list[dict[str, Any]] = Field(
        [], description="Extra points: each a mapping of dotted keys set on top of base (axes do not apply)",
    )
    exclude: list[dict[str, Any]] = Field(
        [], description="Product points to drop: a point goes when its values match every key of an entry "
        "({algorithm.name: grpo} drops every grpo point)",
    )
    executor: ExecutorConfig = Field(default_factory=LocalExecutorConfig, description="Where the runs go: local, ray or slurm")
    finding: FindingConfig | None = Field(None, description="A published effect the grid's runs test "
                                          "(`lgrpo-bench findings`; lgrpo_bench.config.findings)")
    findings: list[FindingConfig] = Field([], description="Several findings the same runs test (instead of finding)")

    @model_validator(mode="after")
    def _one_findings_key(self) -> GridConfig:
        if self.finding is not None and self.findings:
            raise ValueError("give finding (one) or findings (a list), not both")
        return self

    @property
    def all_findings(self) -> list[FindingConfig]:
        """The grid's findings: ``[finding]`` or ``findings``."""
        return [self.finding] if self.finding is not None else list(self.findings)


@dataclass(frozen=True)
class GridPoint:
    """One run of a grid: its resolved config, its run id and the values that distinguish it.

    Points that differ only in ``train.seed`` share their config's sections other than ``train``: copy a config
    before changing it (``model_copy(deep=True)``, as preparing a run does)."""

    index: int
    run_id: str
    config: RunConfig
    values: dict[str, Any]
    origin: str  # "axes" or "include[i]"

    def label(self) -> str:
        return ", ".join(f"{key}={_short(value)}" for key, value in self.values.items()) or "(base)"


@dataclass
class ExpandedGrid:
    """A validated grid and its points, in plan order."""

    path: Path
    grid: GridConfig
    points: list[GridPoint]
    axis_keys: list[str] = field(default_factory=list)

    @property
    def value_keys(self) -> list[str]:
        """Axis keys, then keys that only include entries set (columns of the plan table)."""
        keys = list(self.axis_keys)
        for point in self.points:
            keys.extend(key for key in point.values if key not in keys)
        return keys


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def run_config_keys() -> tuple[set[str], set[str]]:
    """(leaf keys, section keys) of a run config, dotted (``train.seed``; ``train``)."""
    keys = known_keys()
    sections = {key.rsplit(".", 1)[0] for key in keys if "." in key}
    return keys - sections, sections


def check_run_key(key: str, where: str, source: str, leaves: set[str], sections: set[str]) -> None:
    """Raise :class:`ConfigError` at ``source: where`` unless ``key`` is a run-config value (with a did-you-mean hint)."""
    if key in leaves:
        return
    if key in sections:
        raise ConfigError(f"{source}: {where}: {key!r} is a section, not a value; use a dotted key such as "
                          f"{sorted(k for k in leaves if k.startswith(key + '.'))[0]}")
    close = difflib.get_close_matches(key, sorted(leaves), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"{source}: {where}: not a run config key{hint}; see `lgrpo-bench config schema`")


def load_grid(path: str | Path, *, identify: Identify, check: Checker = no_checks,
              max_points: int = DEFAULT_MAX_POINTS) -> ExpandedGrid:
    """Read, validate and expand a grid file; raise :class:`ConfigError` on the first problems found.

    ``identify`` gives a point's run id; ``check`` finds problems the schema cannot see (both from the resolve step)."""
    path = Path(path)
    return expand_grid(validate_file(path, GridConfig), path, identify=identify, check=check, max_points=max_points)


def count_points(grid: GridConfig) -> int:
    """Points of the product before ``exclude`` (an upper bound of the grid's size) plus ``include``."""
    product = 1
    for values in grid.axes.values():
        product *= max(len(values), 1)
    return product + len(grid.include)


def base_mapping(base: dict[str, Any] | str, path: Path) -> tuple[dict[str, Any], str]:
    """A grid's or sweep's ``base`` (a mapping, or a run YAML path relative to the file at ``path``) as a fresh
    mapping, and the prefix errors in it are reported under."""
    if isinstance(base, dict):
        return copy.deepcopy(base), f"{path}: base."
    base_path = (path.parent / base).resolve()
    if not base_path.is_file():
        raise ConfigError(f"{path}: base: no such run config file {base!r} (looked for {base_path})")
    return read_yaml(base_path), f"{base_path}: "


def expand_grid(grid: GridConfig, path: str | Path = "<grid>", *, identify: Identify, check: Checker = no_checks,
                max_points: int = DEFAULT_MAX_POINTS) -> ExpandedGrid:
    """Every point of ``grid`` as a validated :class:`GridPoint` (see the module docstring for the rules)."""
    path = Path(path)
    source = str(path)
    points_at_most = count_points(grid)
    if points_at_most > max_points:
        sizes = " × ".join(f"{len(values):,} {key}" for key, values in grid.axes.items())
        raise ConfigError(f"{source}: axes: {sizes} make {points_at_most:,} points, above the limit of {max_points:,}; "
                          "split the grid, or raise the limit with --max-points if you mean it")
    leaves, sections = run_config_keys()
    base, base_prefix = base_mapping(grid.base, path)

    origins: dict[str, str] = {}
    for key, value in grid.overrides.items():
        check_run_key(key, f"overrides.{key}", source, leaves, sections)
        set_dotted(base, key, value)
        origins[key] = f"{source}: overrides.{key}"
    for key, values in grid.axes.items():
        check_run_key(key, f"axes.{key}", source, leaves, sections)
        if not values:
            raise ConfigError(f"{source}: axes.{key}: empty list, so the product has no points; give at least one value")
        for i, value in enumerate(values):
            if value in values[:i]:
                raise ConfigError(f"{source}: axes.{key}[{i}]: value {value!r} repeats axes.{key}[{values.index(value)}]")
    for group in ("include", "exclude"):
        for i, entry in enumerate(getattr(grid, group)):
            if not entry:
                raise ConfigError(f"{source}: {group}[{i}]: empty mapping; give dotted keys and values")
            for key in entry:
                check_run_key(key, f"{group}[{i}].{key}", source, leaves, sections)
    for i, entry in enumerate(grid.exclude):
        stray = [key for key in entry if key not in grid.axes]
        if stray:
            raise ConfigError(f"{source}: exclude[{i}].{stray[0]}: not an axis; exclude entries match axis values "
                              f"({', '.join(grid.axes) or 'no axes defined'})")

    axis_keys = list(grid.axes)
    raw_points: list[tuple[dict[str, Any], str]] = []
    for combo in itertools.product(*(grid.axes[key] for key in axis_keys)):
        values = dict(zip(axis_keys, combo))
        if any(all(values[key] == value for key, value in entry.items()) for entry in grid.exclude):
            continue
        raw_points.append((values, "axes"))
    for i, entry in enumerate(grid.include):
        raw_points.append((dict(entry), f"include[{i}]"))
    if not raw_points:  # only exclusion can empty it: no axes is one point, the base itself
        raise ConfigError(f"{source}: exclude: every point of the product is excluded; nothing to run")

    errors: list[str] = []
    points: list[GridPoint] = []
    by_run_id: dict[str, GridPoint] = {}
    seeded: dict[str, tuple[RunConfig, Callable[[int], str]]] = {}  # values but the seed → a checked config, its ids
    for values, origin in raw_points:
        data = _copy_sections(base)
        for key, value in values.items():
            set_dotted(data, key, value)
        set_dotted(data, "tracking.grid", grid.name)
        family = _without_seed(values) if SEED_KEY in values else None
        sibling = seeded.get(family) if family is not None else None
        if sibling is not None:  # another seed of a checked point: share its sections but train, skip its checks
            checked, ids = sibling
            data = {name: data["train"] if name == "train" else getattr(checked, name) for name in RunConfig.model_fields}
        try:
            config = RunConfig.model_validate(data)
        except ValidationError as err:
            if _collect(errors, _point_errors(err, values, origin, grid, source, base_prefix, origins)):
                break
            continue
        if sibling is None:
            problems = check(config)
            if problems:
                if _collect(errors, _problem_lines(problems, values, origin, grid, source, base_prefix, origins)):
                    break
                continue
            ids = identify(config)
            if family is not None:
                seeded[family] = (config, ids)
        point = GridPoint(len(points), ids(config.train.seed), config, values, origin)
        twin = by_run_id.get(point.run_id)
        if twin is not None:
            errors.append(
                f"{source}: {origin}: point {point.label()} duplicates point {twin.label()} ({twin.origin}): both resolve "
                f"to run {point.run_id} (keys that do not change results do not count: "
                f"{', '.join(_excluded_keys())})"
            )
            if len(errors) >= MAX_ERRORS_SHOWN:
                break
            continue
        by_run_id[point.run_id] = point
        points.append(point)
    if errors:
        raise ConfigError("\n".join(errors))
    if grid.all_findings:
        check_findings(grid.all_findings, [point.config for point in points], source,
                       check_key=lambda key, where: check_run_key(key, where, source, leaves, sections),
                       field="finding" if grid.finding is not None else "findings")
    return ExpandedGrid(path, grid, points, axis_keys)


def _collect(errors: list[str], lines) -> bool:
    """Add the ``lines`` not in ``errors`` yet (one line per problem, not one per point); True once
    :data:`MAX_ERRORS_SHOWN` are there."""
    for line in lines:
        if line not in errors:
            errors.append(line)
    return len(errors) >= MAX_ERRORS_SHOWN


def _without_seed(values: dict[str, Any]) -> str:
    """A key for a point's values but :data:`SEED_KEY` (``repr`` tells 1, 1.0 and True apart, as validation may not)."""
    return repr([(key, value) for key, value in values.items() if key != SEED_KEY])


def _copy_sections(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of the nested mappings (what :func:`set_dotted` writes into); other values are shared, and
    validation copies them into the config (10× faster than ``copy.deepcopy`` on 10,000-point grids)."""
    return {key: _copy_sections(value) if isinstance(value, dict) else value for key, value in data.items()}


def _excluded_keys() -> list[str]:
    return [f"{section}.*" if fields is None else f"{section}.{name}"
            for section, fields in IDENTITY_EXCLUDED.items() for name in (sorted(fields) if fields else [None])]


def _where(key: str, values: dict[str, Any], origin: str, grid: GridConfig, source: str, base_prefix: str,
           origins: dict[str, str]) -> tuple[str, Any] | None:
    """Where the value of dotted ``key`` came from for this point: (location text, value) or None (base)."""
    for candidate in sorted((k for k in values if key == k or key.startswith(k + ".")), key=len, reverse=True):
        value = values[candidate]
        if origin == "axes":
            return f"{source}: axes.{candidate}[{grid.axes[candidate].index(value)}]", value
        return f"{source}: {origin}.{candidate}", value
    for candidate in sorted((k for k in origins if key == k or key.startswith(k + ".")), key=len, reverse=True):
        return origins[candidate], grid.overrides[candidate]
    return None


def _point_errors(err: ValidationError, values: dict[str, Any], origin: str, grid: GridConfig, source: str,
                  base_prefix: str, origins: dict[str, str]) -> list[str]:
    lines = []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"])
        message = error_message(item)
        if not key:  # a check across fields: name the point
            lines.append(f"{source}: {origin}: point {_label(values)}: {message}")
            continue
        found = _where(key, values, origin, grid, source, base_prefix, origins)
        bad = item.get("input")
        shown = "" if item["type"] in ("extra_forbidden", "missing") or isinstance(bad, dict) else f" (got {echo(bad)})"
        location = f"{base_prefix}{key}" if found is None else found[0]
        lines.append(f"{location}: {message}{shown}")
    return lines


def _problem_lines(problems: list[ConfigProblem], values: dict[str, Any], origin: str, grid: GridConfig, source: str,
                   base_prefix: str, origins: dict[str, str]) -> list[str]:
    """Error lines of the checker's problems, each at the grid key its value came from (as for schema errors)."""
    lines = []
    for problem in problems:
        shown = f" (got {echo(problem.value)})" if problem.show_value else ""
        if not problem.key:
            lines.append(f"{source}: {origin}: point {_label(values)}: {problem.message}")
            continue
        found = _where(problem.key, values, origin, grid, source, base_prefix, origins)
        location = f"{base_prefix}{problem.key}" if found is None else found[0]
        lines.append(f"{location}: {problem.message}{shown}")
    return lines


def _label(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={_short(value)}" for key, value in values.items()) or "(base)"

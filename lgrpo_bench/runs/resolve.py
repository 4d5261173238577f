"""Resolving a run: the one step that checks a config against the registries, computes its run id and its folder.

``config/`` validates the *shape* of run configs, grids and sweeps (its ``algorithm`` fields built from the axis values'
declarations); this module adds
what needs the registries, all of them known without torch, transformers or lm-eval:

* :func:`run_problems` — the algorithm preset and axis values and their combination
  (:mod:`lgrpo_bench.algorithms.presets`), the model (a tiny or Qwen preset from :mod:`lgrpo_bench.models.presets`,
  an existing folder, or a hub id ``owner/name``), the benchmarks and their protocol overrides
  (:mod:`lgrpo_bench.evaluation.benchmarks`), prompt templates (:mod:`lgrpo_bench.tasks.templates`), the tiny
  presets' held-out split, and that every configured data file exists and parses (a malformed line of
  ``amc23.jsonl`` is found before training starts, not after). Results are cached per distinct value, so a
  10,000-point grid costs a handful of checks;
* :func:`run_id` — the content hash of the resolved config (:func:`lgrpo_bench.config.identity_payload` with the
  resolved algorithm);
* :func:`load_run`, :func:`load_grid`, :func:`load_sweep`, :func:`build_run` — the ``config`` loaders with those
  checks passed in: use these, not the bare ``config`` functions, for anything a user wrote.

Whoever starts a run (the grid orchestrator, a sweep, ``lgrpo-bench train``) then calls :func:`prepare_run` once:
the config gets an absolute ``runs_dir`` and tracking URI (neither is part of the run id), its ``algorithm`` section
is replaced by the resolved algorithm (the preset expanded: every axis value and hyperparameter stated,
:func:`lgrpo_bench.algorithms.presets.resolved_section`; the run id is unchanged by it), and the resolved config is
written to ``<runs_dir>/<experiment>/<run_id>/config.yaml`` (a folder of the layout before per-experiment folders,
``<runs_dir>/<run_id>/``, is moved there first). The run's processes read it back with :func:`read_resolved` and take
the run id from the folder's name: nothing downstream re-checks, re-hashes or re-writes it, and training reads the
algorithm as stated (:func:`lgrpo_bench.algorithms.presets.stored_algorithm`), resolving nothing again.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lgrpo_bench.config import (
    ConfigError,
    ConfigProblem,
    RunConfig,
    build_run_config,
    dump_yaml,
    identity_hash,
    identity_payload,
    load_run_config,
    read_yaml,
    seed_identity_hashes,
)
from lgrpo_bench.config.grid import DEFAULT_MAX_POINTS, ExpandedGrid
from lgrpo_bench.tracking.record import CONFIG_FILE, RunLayout

__all__ = [
    "PreparedRun", "absolute_locations", "build_run", "eval_problems", "load_grid", "load_run", "load_sweep", "prepare_run",
    "read_resolved", "run_id", "run_ids_by_seed", "run_problems", "trial_config",
]

HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# ---------------------------------------------------------------------------------------------------------
# Checks against the registries
# ---------------------------------------------------------------------------------------------------------
def run_problems(config: RunConfig) -> list[ConfigProblem]:
    """Everything wrong with ``config`` that its schema cannot see (see the module docstring); [] when nothing is."""
    problems = list(_algorithm_problems(config))
    problems += _model_problems(config.model.name)
    problems += _split_problems(config)
    problems += _template_problems(config.task.template, "task.template")
    problems += eval_problems(config.eval)
    problems += biased_sampling_problems(config)
    if config.task.name == "math" and config.task.data is not None:
        levels = tuple(config.task.levels) if config.task.levels is not None else None
        problems += _math_data_problems(config.task.data, levels)
    return problems


def biased_sampling_problems(config: RunConfig) -> list[ConfigProblem]:
    """TRL's vLLM importance-sampling correction with truncated sampling (``top_p < 1`` or ``top_k > 0``) is refused.

    vLLM returns log-probabilities renormalised over the tokens that survive truncation (``processed_logprobs``),
    while the trainer's are over the full vocabulary, so every token's ratio carries the kept mass S < 1, which is no
    policy change: the loss is scaled by S (TRL #6789, open; TRL 1.16 has no correction against the truncated
    distribution)."""
    train = config.train
    if not (train.use_vllm and train.vllm_importance_sampling_correction) or (train.top_p >= 1 and train.top_k == 0):
        return []
    truncation = " and ".join(part for part, on in ((f"train.top_p={train.top_p}", train.top_p < 1),
                                                     (f"train.top_k={train.top_k}", train.top_k > 0)) if on)
    return [ConfigProblem("train.vllm_importance_sampling_correction",
                          f"on with train.use_vllm and {truncation}: TRL's vLLM importance-sampling correction is "
                          "biased under truncated sampling (vLLM's log-probabilities are renormalised over the kept "
                          "tokens, the trainer's are not, so every ratio carries the kept mass; TRL #6789); set "
                          "train.vllm_importance_sampling_correction: false, or train.top_p: 1.0 and train.top_k: 0")]


def _algorithm_problems(config: RunConfig) -> list[ConfigProblem]:
    from lgrpo_bench.algorithms.presets import AlgorithmError, algorithm_of

    try:
        algorithm_of(config)
    except AlgorithmError as error:
        return [ConfigProblem(error.key or "", str(error), error.value, show_value=error.key is not None)]
    return []


@functools.lru_cache(maxsize=256)
def _model_problems(name: str) -> tuple[ConfigProblem, ...]:
    """Why ``name`` cannot be a model (nothing when it can): a preset, an existing folder or a hub id owner/name."""
    from lgrpo_bench.models.presets import QWEN_PRESETS, TINY_PRESETS

    if name in TINY_PRESETS or name.lower() in QWEN_PRESETS:
        return ()
    path = Path(name).expanduser()
    if path.is_dir():
        return ()
    if name.startswith(("/", "./", "../", "~")):
        return (ConfigProblem("model.name", f"unknown model {name!r}: no such folder"),)
    if HUB_ID_RE.match(name):
        return ()
    presets = [*TINY_PRESETS, *QWEN_PRESETS]
    close = difflib.get_close_matches(name, presets, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (ConfigProblem("model.name", f"unknown model {name!r}: not a preset ({', '.join(presets)}){hint}, "
                                        "an existing folder or a hub id owner/name"),)


def _split_problems(config: RunConfig) -> list[ConfigProblem]:
    if config.task.name not in ("arith", "lenmix") or not config.model.name.startswith("tiny-"):
        return []
    from lgrpo_bench.tasks.arith import ARITH_DEFAULT_DIGITS, ARITH_N_TEST, ARITH_SPLIT_SEED

    task = config.task
    if (task.data_seed, tuple(task.digits)) == (ARITH_SPLIT_SEED, tuple(ARITH_DEFAULT_DIGITS)) \
            and task.num_heldout_problems <= ARITH_N_TEST:
        return []
    return [ConfigProblem("", f"task.data_seed={task.data_seed}, task.digits={task.digits}, task.num_heldout_problems="
                              f"{task.num_heldout_problems}: with a tiny preset the held-out split must be the one its "
                              f"warm start never saw (data_seed {ARITH_SPLIT_SEED}, digits {list(ARITH_DEFAULT_DIGITS)}, "
                              f"at most {ARITH_N_TEST} problems), or held-out accuracy would be measured on training data")]


@functools.lru_cache(maxsize=64)
def _template_problems(template: str | None, key: str) -> tuple[ConfigProblem, ...]:
    from lgrpo_bench.tasks.templates import TEMPLATES

    if template is None or template in TEMPLATES:
        return ()
    return (ConfigProblem(key, f"unknown template {template!r}; choose from {', '.join(TEMPLATES)}"),)


def _eval_overrides_key(eval_config) -> tuple:
    return tuple(sorted((name, tuple(sorted(override.model_dump().items())))
                        for name, override in eval_config.overrides.items()))


def eval_problems(eval_config) -> list[ConfigProblem]:
    """The benchmark checks of :func:`run_problems` for an ``eval`` section (also ``lgrpo-bench eval``'s): names and
    protocol overrides (cached), then each configured data file (re-read only when it changed)."""
    benchmarks = tuple(eval_config.benchmarks)
    problems = list(_eval_problems(benchmarks, _eval_overrides_key(eval_config)))
    return problems or _benchmark_data_problems(benchmarks, eval_config.data_dir)


@functools.lru_cache(maxsize=256)
def _eval_problems(benchmarks: tuple[str, ...], overrides: tuple) -> tuple[ConfigProblem, ...]:
    from lgrpo_bench.evaluation.benchmarks import BENCHMARK_NAMES, get_benchmark
    from lgrpo_bench.tasks.templates import TEMPLATES

    problems: list[ConfigProblem] = []
    for name in benchmarks:
        if name not in BENCHMARK_NAMES:
            close = difflib.get_close_matches(name, BENCHMARK_NAMES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(ConfigProblem("eval.benchmarks", f"unknown benchmark {name!r}{hint}; choose from "
                                                             f"{', '.join(BENCHMARK_NAMES)}", list(benchmarks), True))
    key = "eval.overrides"
    for name, items in overrides:
        override = dict(items)
        if name not in BENCHMARK_NAMES:
            problems.append(ConfigProblem(key, f"{name}: unknown benchmark; choose from {', '.join(BENCHMARK_NAMES)}"))
            continue
        default = get_benchmark(name)
        k = override["k"] if override["k"] is not None else default.k
        temperature = override["temperature"] if override["temperature"] is not None else default.temperature
        if temperature == 0 and k > 1:
            problems.append(ConfigProblem(key, f"{name}: k={k} samples at temperature 0 are {k} copies of the greedy "
                                               f"answer; set temperature > 0 for avg@{k}, or k: 1"))
        template = override["template"]
        if template is not None and template not in TEMPLATES:
            problems.append(ConfigProblem(key, f"{name}.template: unknown template {template!r}; choose from "
                                               f"{', '.join(TEMPLATES)}"))
        elif template is not None and (template == "arith") != (default.scorer == "arith"):
            problems.append(ConfigProblem(key, f"{name}.template: {template!r} does not fit this benchmark's answer "
                                               "format"))
    return tuple(problems)


def _benchmark_data_problems(benchmarks: tuple[str, ...], data_dir: str | None) -> list[ConfigProblem]:
    """Each benchmark file of the data folder (``eval.data_dir``, else ``$LGRPO_DATA_DIR``) must exist and parse.
    Without a folder the benchmarks come from the hub when they run, and nothing is checked here."""
    from lgrpo_bench.evaluation.benchmarks import ARITH, get_benchmark, resolve_data_dir

    folder = resolve_data_dir(data_dir)
    problems = []
    for name in benchmarks:
        if name == ARITH or folder is None:
            continue
        files = [folder / file_name for file_name in get_benchmark(name).files]
        found = next((path for path in files if path.is_file()), None)
        if found is None:
            problems.append(ConfigProblem("eval.benchmarks", f"{name}: the data folder {folder} has no "
                                                             f"{' or '.join(f.name for f in files)}"))
            continue
        problem = _jsonl_problem(str(found), *_stamp(found))
        if problem:
            problems.append(ConfigProblem("eval.benchmarks", f"{name}: {problem}"))
    return problems


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


LevelCounts = tuple[tuple[int | None, int], ...]
"""Records of a problem file per MATH level (:func:`lgrpo_bench.tasks.math_data.math_level`; None: no level)."""


@functools.lru_cache(maxsize=64)
def _jsonl_read(path: str, mtime_ns: int, size: int) -> tuple[str | None, LevelCounts]:
    """Why the problem file at ``path`` cannot be read (file and line; None when it parses) and its records per
    level, read once per version of the file (a 10,000-point grid costs one read per file)."""
    from collections import Counter

    from lgrpo_bench.tasks.math_data import load_jsonl, math_level

    try:
        problems = load_jsonl(path)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        return str(error), ()
    counts = Counter(math_level(problem) for problem in problems)
    return None, tuple(sorted(counts.items(), key=lambda item: (item[0] is None, item[0] or 0)))


def _jsonl_problem(path: str, mtime_ns: int, size: int) -> str | None:
    """Why the problem file at ``path`` cannot be read (file and line), None when it parses (cached per version)."""
    return _jsonl_read(path, mtime_ns, size)[0]


def _training_examples_problems(path: Path, counts: LevelCounts, levels: tuple[int, ...] | None) -> list[ConfigProblem]:
    """A MATH training file that leaves no training example: no record at all, or none of ``task.levels``
    (the filter of :func:`lgrpo_bench.tasks.math_data.filter_levels`). Any kept record trains: the held-out
    split takes at most a tenth of them, and TRL repeats a set smaller than a step."""
    total = sum(n for _, n in counts)
    if total == 0:
        return [ConfigProblem("task.data", f"{path} holds 0 records, so training has no example; give a file with at "
                                           "least one problem")]
    if levels is None or any(level in levels for level, _ in counts):
        return []
    found = ", ".join(f"{'no level' if level is None else f'level {level}'}: {n:,}" for level, n in counts)
    return [ConfigProblem("task.levels", f"keeps 0 of the {total:,} records of {path} ({found}), so training has no "
                                         "example; choose levels the file holds", list(levels), show_value=True)]


def _math_data_problems(source: str, levels: tuple[int, ...] | None = None) -> list[ConfigProblem]:
    """``task.data`` must be a readable JSONL file (or a folder holding one) that leaves at least one training
    example once ``levels`` (``task.levels``) filter it; a hub id is read when the run starts."""
    from lgrpo_bench.tasks.math_data import MATH_TRAIN_FILENAME

    path = Path(source).expanduser()
    if not (source.endswith(".jsonl") or source.startswith((".", "/", "~")) or path.exists()):
        return []  # a hub id: read when the run starts
    if path.is_dir():
        path = path / MATH_TRAIN_FILENAME
        if not path.is_file():
            return [ConfigProblem("task.data", f"the folder {source!r} has no {MATH_TRAIN_FILENAME}")]
    if not path.is_file():
        return [ConfigProblem("task.data", f"no such file {source!r} (a JSONL file, or a folder holding "
                                           f"{MATH_TRAIN_FILENAME})")]
    problem, counts = _jsonl_read(str(path), *_stamp(path))
    if problem:
        return [ConfigProblem("task.data", problem)]
    return _training_examples_problems(path, counts, levels)


# ---------------------------------------------------------------------------------------------------------
# Identity and loaders
# ---------------------------------------------------------------------------------------------------------
def run_id(config: RunConfig) -> str:
    """The run id of ``config``: 12 hex characters of the SHA-256 of its identity (see
    :func:`lgrpo_bench.config.identity_payload`); the algorithm must resolve (check with :func:`run_problems`)."""
    return identity_hash(_identity(config))


def run_ids_by_seed(config: RunConfig):
    """``seed ↦ run id`` of the configs equal to ``config`` but for ``train.seed`` (``run_ids_by_seed(c)(s)`` equals
    :func:`run_id` of ``c`` with seed ``s``; :func:`lgrpo_bench.config.seed_identity_hashes`): what a grid's seed axis
    needs, one JSON encoding per configuration instead of one per seed."""
    return seed_identity_hashes(_identity(config))


def _identity(config: RunConfig) -> dict[str, Any]:
    from lgrpo_bench.algorithms.presets import algorithm_of

    return identity_payload(config, algorithm_of(config).identity())


def build_run(data: dict[str, Any], source: str = "<config>") -> RunConfig:
    """A run config from a mapping, validated and checked (:class:`ConfigError` naming ``source`` and the keys)."""
    return build_run_config(data, source, run_problems)


def load_run(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """A run YAML with ``--set`` overrides, validated and checked."""
    return load_run_config(path, overrides, run_problems)


def load_grid(path: str | Path, *, max_points: int = DEFAULT_MAX_POINTS) -> ExpandedGrid:
    """A grid file, expanded into checked points with their run ids (:func:`lgrpo_bench.config.grid.load_grid`)."""
    from lgrpo_bench.config.grid import load_grid as load_grid_file

    return load_grid_file(path, identify=run_ids_by_seed, check=run_problems, max_points=max_points)


def load_sweep(path: str | Path):
    """A sweep file, validated with its base config and every probe of its space checked."""
    from lgrpo_bench.config.sweep import load_sweep as load_sweep_file

    return load_sweep_file(path, run_problems)


def trial_config(loaded, params: dict[str, Any]) -> RunConfig:
    """A sweep trial's run config: base + overrides + the trial's parameters, validated and checked."""
    from lgrpo_bench.config.sweep import trial_run_config

    return trial_run_config(loaded, params, run_problems)


# ---------------------------------------------------------------------------------------------------------
# Preparing a run
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreparedRun:
    """A resolved config, its run id and its folder."""

    config: RunConfig
    run_id: str
    layout: RunLayout

    def write(self) -> None:
        """Write ``config.yaml`` into the run's folder (moving a folder of the old layout there first)."""
        from lgrpo_bench.runs.owner import adopt_legacy_folder

        adopt_legacy_folder(self.layout, self.config.tracking.experiment)
        self.layout.write_config(dump_yaml(self.config))


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
    resolved = _with_resolved_algorithm(absolute_locations(config))
    rid = rid or run_id(resolved)
    prepared = PreparedRun(resolved, rid, RunLayout.for_config(resolved, rid))
    if write:
        prepared.write()
    return prepared


def _with_resolved_algorithm(config: RunConfig) -> RunConfig:
    """``config`` with its ``algorithm`` section replaced by the resolved algorithm, stated in full (the one place a
    run's algorithm is resolved; resolving the result again gives the same algorithm and the same run id)."""
    from lgrpo_bench.algorithms.presets import algorithm_of, resolved_section

    config.algorithm = type(config.algorithm)(**resolved_section(algorithm_of(config)))
    return config


def read_resolved(run_dir: str | os.PathLike[str]) -> tuple[RunConfig, str]:
    """The resolved config written by :func:`prepare_run` into ``run_dir``, and the run id (the folder's name).

    A folder prepared before ``config.yaml`` stated the resolved algorithm gets it resolved here, in memory, as
    :func:`prepare_run` does now (the run id does not change)."""
    from lgrpo_bench.algorithms.presets import AlgorithmError, stored_algorithm

    layout = RunLayout(Path(run_dir).expanduser().resolve())
    if not layout.config_file.is_file():
        raise ConfigError(f"{layout.root}: no {CONFIG_FILE}; this is not a prepared run folder")
    config = build_run_config(read_yaml(layout.config_file), str(layout.config_file))
    try:
        stored_algorithm(config)
    except AlgorithmError:
        config = _with_resolved_algorithm(config)
    return config, layout.run_id

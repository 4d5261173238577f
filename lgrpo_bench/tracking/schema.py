"""The MLflow schema of lgrpo-bench: every tag key, tag value, metric name and param rule, in one place.

This module is a public contract. Reports, notebooks and sweeps read runs back through these names, so a
name here changes only together with its readers. It imports nothing heavier than the standard library.

Runs and their tags
-------------------
Every run carries these tags (all values are strings, as MLflow stores them):

==========================  =====================================================================================
``lgrpo.algorithm``         algorithm name as registered in :mod:`lgrpo_bench.algorithms` (``grpo``, ``dapo``, ...)
``lgrpo.model``             model id or path as configured
``lgrpo.model_size``        parameter count class of the model (free text from the config, e.g. ``0.5B``)
``lgrpo.seed``              the run seed, as a decimal string
``lgrpo.task``              training task name (``arith``, ``math``, ...)
``lgrpo.run_id``            content hash of the resolved config (the run's identity; *not* MLflow's run id)
``lgrpo.grid``              name of the grid the run belongs to (absent for runs outside a grid)
``lgrpo.study``             name of the sweep's Optuna study (trials and the study's parent run)
``lgrpo.trial``             Optuna trial number (sweep trials)
``lgrpo.kind``              one of :data:`KINDS`: ``train``, ``warm_start``, ``eval``, ``grid``, ``study``
``lgrpo.state``             one of :data:`STATES`: ``running``, ``trained``, ``done``, ``failed``, ``pruned``
``lgrpo.git_commit``        commit of the lgrpo-bench source that ran (:data:`GIT_COMMIT_UNKNOWN` outside a git checkout)
``lgrpo.versions``          JSON object of package versions, see :func:`versions_tag_value`
``mlflow.parentRunId``      MLflow's own parent link: eval runs point at their train run, grid/study members at
                            the grid/study run (:data:`TAG_PARENT_RUN_ID`)
==========================  =====================================================================================

``lgrpo.state`` is ours, separate from MLflow's run status: a run is ``done`` only when all its outputs
(metrics, checkpoints, evaluation) are written, which MLflow's ``FINISHED`` does not promise.

Metrics
-------
* Training metrics live under ``train/`` and are logged at the optimizer step (``state.global_step``).
  The names we compute or map to are the ``TRAIN_*`` constants below (collected in :data:`TRAIN_METRICS`).
* Evaluation metrics are ``eval/<benchmark>/<metric>``, built with :func:`eval_metric` and split back with
  :func:`parse_eval_metric`. The benchmark part never contains ``/``; the metric part may.
* Metrics that TRL's ``GRPOTrainer`` logs are renamed onto these names next to the trainer
  (:mod:`lgrpo_bench.training.trl_metrics`); a key it does not know becomes :func:`train_metric` of it, nothing is
  dropped silently. Keys of the trainer's in-loop evaluation are stored under :data:`TRAINER_EVAL_BENCHMARK`.
* Every metric has a unit (:func:`metric_spec`: :class:`Unit` and which way is better): fractions are logged in
  [0, 1] and shown in points (× 100), lengths in tokens, rewards as rewards. Reports, their CSVs, ``plan``'s power
  lines and ``status`` show values in these units, and only here are they defined.

Params
------
The resolved config is logged as params with :func:`flatten_params`: nested keys joined with ``.``, values
stringified (strings as-is, scalars with ``str``, lists as JSON), values longer than MLflow's limit
(:data:`MAX_PARAM_VALUE_LENGTH`) truncated with :data:`PARAM_TRUNCATION_MARKER` and a note of the full
length. :func:`unflatten_params` rebuilds the nesting.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any


_logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------
# Tags
# ---------------------------------------------------------------------------------------------------------
TAG_ALGORITHM = "lgrpo.algorithm"
TAG_MODEL = "lgrpo.model"
TAG_MODEL_SIZE = "lgrpo.model_size"
TAG_SEED = "lgrpo.seed"
TAG_TASK = "lgrpo.task"
TAG_RUN_ID = "lgrpo.run_id"
"""Content hash of the resolved config: equal configs give equal ids, whatever MLflow's run id."""
TAG_GRID = "lgrpo.grid"
TAG_STUDY = "lgrpo.study"
"""Name of the Optuna study (sweep) a run is a trial of, or that a ``study`` parent run stands for."""
TAG_TRIAL = "lgrpo.trial"
"""Optuna trial number of a sweep's run (the latest, when a failed trial was retried with the same run)."""
TAG_KIND = "lgrpo.kind"
TAG_STATE = "lgrpo.state"
TAG_GIT_COMMIT = "lgrpo.git_commit"
GIT_COMMIT_UNKNOWN = "unknown"
"""Value of ``lgrpo.git_commit`` when the source is not a git checkout."""
TAG_VERSIONS = "lgrpo.versions"
TAG_PARENT_RUN_ID = "mlflow.parentRunId"
"""MLflow's own parent link (``mlflow.utils.mlflow_tags.MLFLOW_PARENT_RUN_ID``); the UI nests runs by it."""

TAG_ERROR = "lgrpo.error"
"""Short error of a failed run (set by training, or by the job runner when the process died)."""
TAG_FAILED_STEP = "lgrpo.failed_step"
"""``train`` or ``eval``: the step of the run that failed last."""
FAILURE_TAG_PREFIX = "lgrpo.failed."
"""On a grid's parent run: ``lgrpo.failed.<run_id>`` = error of a run that failed before creating its MLflow run."""
TAG_MODEL_DIR = "lgrpo.model_dir"
"""Train runs: the folder of the final model (``<runs_dir>/<run_id>/final``)."""
TAG_WARM_START_KEY = "lgrpo.warm_start_key"
"""Warm-start runs: the cache key of the tiny checkpoint they describe (one warm-start run per key)."""
TAG_GRID_POINTS = "lgrpo.grid.n_points"
"""Grid parent runs: how many points the grid file had when it last ran."""
TAG_GRID_RUNS_DIR = "lgrpo.grid.runs_dir"
"""Grid parent runs: the absolute runs folder of the grid's runs."""
TAG_GRID_RUN_IDS = "lgrpo.grid.run_ids"
"""Grid parent runs: JSON list of the run ids of the grid's current points (the last version that ran)."""

# Experiment tags the MLflow UI (3.x) reads; set by :func:`lgrpo_bench.tracking.store.set_grid_view`.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
"""MLflow's experiment kind: ``genai_development`` opens the experiment on its GenAI overview, other kinds on Runs."""
EXPERIMENT_KIND_TRAINING = "custom_model_development"
"""The kind lgrpo-bench experiments get: the UI opens them on their runs table ("Model training")."""
EXPERIMENT_KINDS_INFERRED = ("", "no_inferred_type", "genai_development_inferred", "custom_model_development_inferred")
"""Kinds the UI guesses by itself (an explicit kind chosen by a user is kept)."""
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
"""``mlflow.sharedViewState.<key>``: a saved runs-table view (filter, columns, grouping) the UI opens for the
URL query ``viewStateShareKey=<key>``; the value is JSON."""
GRID_VIEW_KEY_PREFIX = "lgrpo-grid-"
"""Share key of a grid's view: ``lgrpo-grid-<grid name>``."""


GRID_MEMBER_TAG_PREFIX = "lgrpo.in_grid."
"""Train runs: ``lgrpo.in_grid.<grid>`` = ``true`` for every grid whose file has the run's point (the grid that first
ran it, and every grid that found it done since); ``lgrpo.grid`` keeps the first. A grid's MLflow UI view filters on it."""
TAG_BASE_MODEL_HASH = "lgrpo.base_model.sha256"
"""Train runs of tiny presets: SHA-256 of the base (warm-start) model's weights the run started from."""
TAG_BASE_MODEL_SOURCE = "lgrpo.base_model.source"
"""Train runs of tiny presets: where the base came from: ``shipped`` (in the package, the same on every machine),
``cache`` (built earlier on this machine or a shared cache) or ``built`` (by this run)."""


def grid_member_tag(grid: str) -> str:
    """``lgrpo.in_grid.<grid>``: the membership tag of grid ``grid`` (see :data:`GRID_MEMBER_TAG_PREFIX`)."""
    return f"{GRID_MEMBER_TAG_PREFIX}{grid}"


def failure_tag(run_id: str) -> str:
    """``lgrpo.failed.<run_id>``: the tag a grid parent run carries for a run that failed before its MLflow run existed."""
    return f"{FAILURE_TAG_PREFIX}{run_id}"


# Algorithm axes (one tag per axis, so reports and the MLflow UI can group runs by them)
TAG_AGGREGATION = "lgrpo.algorithm.aggregation"
TAG_SURROGATE = "lgrpo.algorithm.surrogate"
TAG_ADVANTAGE = "lgrpo.algorithm.advantage"
TAG_GROUP_FILTER = "lgrpo.algorithm.group_filter"
ALGORITHM_AXIS_TAGS: tuple[str, ...] = (TAG_AGGREGATION, TAG_SURROGATE, TAG_ADVANTAGE, TAG_GROUP_FILTER)

# The warm start a run rests on (tiny presets): on warm-start runs and on the train runs built on them
TAG_WARM_START_IN_BAND = "lgrpo.warm_start.in_band"
"""``true`` / ``false``: the warm start's greedy held-out accuracy lies in its preset's documented band."""
TAG_WARM_START_GREEDY_ACC = "lgrpo.warm_start.greedy_acc"
"""Greedy held-out accuracy of the warm start, as a decimal string."""

# Provenance: where a run ran (train, eval and warm-start runs)
TAG_HARDWARE = "lgrpo.hardware"
"""One-line summary of the hardware that computed the run (reports group and compare by it), e.g.
``cpu:AMD EPYC 7B13:AVX2`` or ``cuda:NVIDIA H200x1``."""
TAG_HOST_CPU = "lgrpo.host.cpu"
TAG_HOST_CPU_CAPABILITY = "lgrpo.host.cpu_capability"
"""torch's CPU kernel level (``torch.backends.cpu.get_cpu_capability()``: DEFAULT, AVX2, AVX512, ...)."""
TAG_HOST_CUDA_DEVICE = "lgrpo.host.cuda_device"
TAG_HOST_CUDA_COUNT = "lgrpo.host.cuda_count"
TAG_HOST_TORCH_THREADS = "lgrpo.host.torch_threads"
TAG_HOST_PROCESSES = "lgrpo.host.processes"
TAG_HOST_NAME = "lgrpo.host.name"
TAG_HOST_TORCH_BUILD = "lgrpo.host.torch_build"
TAG_EVAL_HARDWARE = "lgrpo.eval_hardware"
"""Train runs: the hardware summary (as ``lgrpo.hardware``) of the process that evaluated the run's final model."""

TAG_RESUMED_FROM = "lgrpo.resumed_from"
"""The checkpoint folder the last attempt resumed from (``checkpoint-N``), or ``scratch``."""
TAG_LAMBDA_RATE_LIMITED_FRAC = "lgrpo.lambda.rate_limited_frac"
"""λ-GRPO: fraction of optimizer steps in which λ moved at its optimizer's rate limit (see TRAIN_LAMBDA_RATE_LIMITED)."""

KIND_TRAIN = "train"
KIND_WARM_START = "warm_start"
KIND_EVAL = "eval"
KIND_GRID = "grid"
KIND_STUDY = "study"
KINDS: tuple[str, ...] = (KIND_TRAIN, KIND_WARM_START, KIND_EVAL, KIND_GRID, KIND_STUDY)
"""Every value ``lgrpo.kind`` may take."""

STATE_RUNNING = "running"
STATE_TRAINED = "trained"
"""Training finished and the final model is saved; the configured evaluation is not (all) logged yet."""
STATE_DONE = "done"
STATE_FAILED = "failed"
STATE_PRUNED = "pruned"
"""A sweep trial stopped early by the study's pruner (final: not resumed, not evaluated)."""
STATE_STOPPED = "stopped"
"""Interrupted on request (Ctrl-C, SIGINT/SIGTERM of the orchestrator): resumable, nothing failed."""
STATES: tuple[str, ...] = (STATE_RUNNING, STATE_TRAINED, STATE_DONE, STATE_FAILED, STATE_PRUNED, STATE_STOPPED)
"""Every value ``lgrpo.state`` may take. A train run goes running → trained → done (``done`` only once every
benchmark of ``eval.benchmarks`` is logged), or → failed / stopped (both resumable); see
:mod:`lgrpo_bench.tracking.record` for the state machine."""

# ---------------------------------------------------------------------------------------------------------
# Evaluation identity and per-problem records
# ---------------------------------------------------------------------------------------------------------
EVAL_TAG_PREFIX = "lgrpo.eval."
EVAL_IDENTITY_FIELDS: tuple[str, ...] = (
    "name", "version", "n", "hash", "protocol", "k", "temperature", "top_p", "max_tokens", "template",
)
"""Tags ``lgrpo.eval.<benchmark>.<field>`` written with every evaluation of a benchmark:

``name`` benchmark name, ``version`` task-pack version of the benchmark, ``n`` problem count, ``hash``
content hash of the problems and gold answers (:func:`lgrpo_bench.tasks.math_data.problems_hash`),
``protocol`` ``greedy`` or ``avg@<k>``, ``k`` samples per problem, ``temperature``/``top_p`` sampling,
``max_tokens`` generation limit, ``template`` prompt template. Two evaluations are comparable only when
``hash`` and ``protocol``/``k``/``temperature``/``top_p`` agree."""

EVAL_RECORDS_FILENAME = "problems.jsonl"
EVAL_RECORD_FIELDS: tuple[str, ...] = (
    "problem_id", "sample", "completion", "extracted", "gold", "correct", "length",
)
"""One JSON object per (problem, sample) in the artifact ``eval/<benchmark>/problems.jsonl``:
``problem_id`` (str), ``sample`` (int, 0-based), ``completion`` (str), ``extracted`` (str or null, the
answer the scorer read), ``gold`` (str), ``correct`` (bool), ``length`` (int, completion tokens)."""

EVAL_METRICS: tuple[str, ...] = ("acc", "acc_stderr", "mean_length", "n")
"""Metric names under ``eval/<benchmark>/``: ``acc`` mean accuracy in [0, 1] (pass@1 for greedy, the mean
over samples for avg@k), ``acc_stderr`` its standard error over problems, ``mean_length`` mean completion
tokens, ``n`` problems; plus pass@k (unbiased estimator) for avg@k protocols, logged as ``pass_<k>`` because
MLflow refuses ``@`` in metric names (the evaluation API and ``--json`` call it ``pass@<k>``)."""


def eval_tag(benchmark: str, field: str) -> str:
    """``lgrpo.eval.<benchmark>.<field>`` for a field of :data:`EVAL_IDENTITY_FIELDS`."""
    if field not in EVAL_IDENTITY_FIELDS:
        raise ValueError(f"unknown evaluation identity field {field!r}; known: {', '.join(EVAL_IDENTITY_FIELDS)}")
    return f"{EVAL_TAG_PREFIX}{benchmark}.{field}"


def eval_records_artifact_dir(benchmark: str) -> str:
    """Artifact folder of a benchmark's per-problem records: ``eval/<benchmark>``."""
    return f"eval/{benchmark.replace('/', '_')}"

VERSIONED_PACKAGES: tuple[str, ...] = (
    "lgrpo-bench",
    "torch",
    "transformers",
    "trl",
    "accelerate",
    "mlflow",
    "lm-eval",
    "math-verify",
    "vllm",
)
"""Distributions whose versions go into ``lgrpo.versions``, in this order."""

NOT_INSTALLED = "not-installed"


def package_versions(packages: Iterable[str] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Installed version of each distribution in ``packages``; ``"not-installed"`` when it is missing."""
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = NOT_INSTALLED
    return versions


def versions_tag_value(packages: Iterable[str] = VERSIONED_PACKAGES) -> str:
    """The value of ``lgrpo.versions``: compact JSON ``{"torch": "2.13.0", ...}`` in :data:`VERSIONED_PACKAGES` order."""
    return json.dumps(package_versions(packages), separators=(",", ":"))


# ---------------------------------------------------------------------------------------------------------
# Artifact names
# ---------------------------------------------------------------------------------------------------------
ARTIFACT_CONFIG = "config.yaml"
ARTIFACT_TRAIN_LOG = "train.log"
ARTIFACT_ERROR = "error.txt"
ARTIFACT_TRAIN_LOG_TAIL = "train_log_tail.txt"
ARTIFACT_RUN_LOG_TAIL = "run_log_tail.txt"
ARTIFACT_TOKEN_WEIGHTS = "token_weights.jsonl"
ARTIFACT_GRID = "grid.yaml"
ARTIFACT_SWEEP = "sweep.yaml"
ARTIFACT_TRL_ARGS = "trl_args.json"
"""Every TRL setting of a train run as resolved (``GRPOConfig.to_dict()``, tokens masked) and the TRL version:
``{"trl_version": ..., "args": {...}}``, rewritten by each attempt; ``report`` warns when runs differ in them other
than through the grid's axes (:mod:`lgrpo_bench.reports.trl_settings`)."""


def failure_log_artifact(run_id: str) -> str:
    """On a grid's parent run: the run log tail of a run that failed before its MLflow run existed."""
    return f"failures/{run_id}/{ARTIFACT_RUN_LOG_TAIL}"


def samples_artifact(step: int) -> str:
    """The sample-completion table of optimizer step ``step``."""
    return f"samples/step_{step:05d}.json"


# ---------------------------------------------------------------------------------------------------------
# MLflow limits (mirrors of mlflow.utils.validation, kept here so the schema needs no MLflow import)
# ---------------------------------------------------------------------------------------------------------
MAX_METRIC_NAME_LENGTH = 250
"""``mlflow.utils.validation.MAX_ENTITY_KEY_LENGTH``: longest metric, param or tag key."""
MAX_PARAM_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
"""``mlflow.utils.validation.MAX_PARAM_VAL_LENGTH``."""
MAX_TAG_VALUE_LENGTH = 8000
"""``mlflow.utils.validation.MAX_TAG_VAL_LENGTH``."""

# MLflow (POSIX) accepts names made of word characters, "/", ".", "-", " " and ":"; we emit a stricter subset.
_MLFLOW_NAME_RE = re.compile(r"^[/\w.\- :]*$")
_DISALLOWED_CHAR_RE = re.compile(r"[^A-Za-z0-9_/.\-]")


def is_valid_metric_name(name: str) -> bool:
    """True when MLflow accepts ``name`` as a metric/param/tag key on every platform it supports.

    Mirrors ``mlflow.utils.validation._validate_metric_name``: allowed characters, no path tricks
    (``a//b``, ``./a``, ``a/..``, leading ``/``: MLflow may store names as file paths), at most 250 characters.
    """
    if not isinstance(name, str) or not name or len(name) > MAX_METRIC_NAME_LENGTH:
        return False
    if not _MLFLOW_NAME_RE.match(name) or ":" in name:  # ":" is refused on Windows
        return False
    normalized = posixpath.normpath(name)
    return normalized == name and normalized != "." and not normalized.startswith(("..", "/"))


def sanitize_metric_name(name: str) -> str:
    """``name`` if MLflow accepts it (see :func:`is_valid_metric_name`), else :func:`strict_metric_name` of it."""
    if is_valid_metric_name(name):
        return name
    return strict_metric_name(name)


def strict_metric_name(name: str) -> str:
    """``name`` rewritten into ``[A-Za-z0-9_/.-]``, deterministically; the form of every name we build.

    Every other character (space, ``,``, ``:``, ``(``, non-ASCII, ...) becomes ``_``; empty path segments are
    removed and ``.``/``..`` segments become ``_`` (MLflow refuses names that normalize to another path);
    names longer than 250 characters keep their first 241 characters plus ``-`` and 8 hex digits of the
    SHA-1 of the original, so distinct long names stay distinct.
    """
    cleaned = _DISALLOWED_CHAR_RE.sub("_", str(name))
    segments = [("_" if segment in (".", "..") else segment) for segment in cleaned.split("/") if segment]
    cleaned = "/".join(segments) or "_"
    if len(cleaned) > MAX_METRIC_NAME_LENGTH:
        digest = hashlib.sha1(str(name).encode()).hexdigest()[:8]
        cleaned = f"{cleaned[: MAX_METRIC_NAME_LENGTH - 9]}-{digest}"
    return cleaned


# ---------------------------------------------------------------------------------------------------------
# Metric names
# ---------------------------------------------------------------------------------------------------------
TRAIN_PREFIX = "train/"
EVAL_PREFIX = "eval/"


def train_metric(name: str) -> str:
    """``train/<name>`` with characters outside ``[A-Za-z0-9_/.-]`` replaced (see :func:`strict_metric_name`)."""
    return strict_metric_name(TRAIN_PREFIX + name)


TRAIN_REWARD_MEAN = "train/reward_mean"
TRAIN_REWARD_STD = "train/reward_std"
TRAIN_ACCURACY = "train/accuracy"
TRAIN_COMPLETION_LENGTH_MEAN = "train/completion_length_mean"
TRAIN_COMPLETION_LENGTH_MIN = "train/completion_length_min"
TRAIN_COMPLETION_LENGTH_MAX = "train/completion_length_max"
TRAIN_CLIP_FRACTION = "train/clip_fraction"
"""Fraction of tokens whose importance ratio was clipped (TRL's ``clip_ratio/region_mean``)."""
TRAIN_ENTROPY = "train/entropy"
TRAIN_KL = "train/kl"
TRAIN_GRAD_NORM = "train/grad_norm"
TRAIN_LEARNING_RATE = "train/learning_rate"
TRAIN_LAMBDA = "train/lambda"
TRAIN_DLAMBDA = "train/dlambda"
TRAIN_WEIGHT_MEAN = "train/weight_mean"
TRAIN_WEIGHT_MIN = "train/weight_min"
TRAIN_WEIGHT_MAX = "train/weight_max"
TRAIN_TOKENS_PER_S = "train/tokens_per_s"
TRAIN_STEP_S = "train/step_s"
TRAIN_FRAC_ZERO_STD_GROUPS = "train/frac_zero_std_groups"
TRAIN_REWARD_TIMEOUTS = "train/reward_timeouts"
TRAIN_HELDOUT_ACC = "train/heldout_acc"
TRAIN_LOSS = "train/loss"
TRAIN_LAMBDA_RATE_LIMITED = "train/lambda_rate_limited"
"""1 when λ's update this step was at its optimizer's rate limit (Adam: |Δλ| ≥ 0.9·lr·schedule), else 0."""
TRAIN_INCORRECT_LENGTH_MEAN = "train/incorrect_length_mean"
"""Mean length (tokens) of this step's generated completions whose accuracy (correctness) reward is 0; not logged
at a step without one (lgrpo_bench.algorithms.length_stats). Dr. GRPO (arXiv 2503.20783) claims GRPO's 1/|o_i| lets
it grow."""
TRAIN_CORRECT_LENGTH_MEAN = "train/correct_length_mean"
"""Mean length (tokens) of this step's generated completions whose accuracy reward is > 0; not logged without one."""
TRAIN_LENGTH_ADVANTAGE_CORR = "train/length_advantage_corr"
"""Mean over the groups whose lengths and advantages both vary of the within-group Pearson correlation of completion
length and advantage; not logged at a step without such a group. λ-GRPO's λ should move with its sign."""
TRAIN_STYLE_SHARE_PREFIX = "train/style_share/"
"""``train/style_share/<style>``: share of this step's generated completions in each answer style (lenmix:
direct, worked, ramble, other; lgrpo_bench.tasks.lenmix.classify_style), this process's completions."""
TRAIN_GENERATION_BATCHES = "train/generation_batches"
"""Generation rounds this step needed (dynamic sampling with re-sampling; 1 otherwise)."""
TRAIN_GROUPS_FILTERED_FRAC = "train/groups_filtered_frac"
"""Fraction of generated groups the group filter removed this step."""
TRAIN_GROUP_FILTER_CAP_REACHED = "train/group_filter_cap_reached"
"""1 when re-sampling hit ``max_generation_batches`` and the step trained on fewer mixed groups than configured."""
TRAIN_NONFINITE_VALUES = "train/nonfinite_values"
"""How many values the trainer logged at this step were NaN or ±inf (those values are not stored under their own
names: a mean over steps would be NaN or inf; the run log names them). A run ends ``done`` only after at least one
step with finite loss, reward and gradient norm (:mod:`lgrpo_bench.runs.lifecycle`)."""

TRAIN_METRICS: tuple[str, ...] = (
    TRAIN_REWARD_MEAN,
    TRAIN_REWARD_STD,
    TRAIN_ACCURACY,
    TRAIN_COMPLETION_LENGTH_MEAN,
    TRAIN_COMPLETION_LENGTH_MIN,
    TRAIN_COMPLETION_LENGTH_MAX,
    TRAIN_CLIP_FRACTION,
    TRAIN_ENTROPY,
    TRAIN_KL,
    TRAIN_GRAD_NORM,
    TRAIN_LEARNING_RATE,
    TRAIN_LAMBDA,
    TRAIN_DLAMBDA,
    TRAIN_WEIGHT_MEAN,
    TRAIN_WEIGHT_MIN,
    TRAIN_WEIGHT_MAX,
    TRAIN_TOKENS_PER_S,
    TRAIN_STEP_S,
    TRAIN_FRAC_ZERO_STD_GROUPS,
    TRAIN_REWARD_TIMEOUTS,
    TRAIN_HELDOUT_ACC,
    TRAIN_LOSS,
)
"""The core training metrics every report may rely on (runs of some algorithms leave some out, e.g. ``train/kl``
when beta is 0, ``train/lambda`` outside lambda-GRPO)."""

EVAL_SECONDS = "seconds"
"""``eval/<benchmark>/seconds``: wall time of the lm-eval call that generated and scored the benchmark (benchmarks
evaluated in one call share it); a measurement of the machine, never a result."""

TRAINER_EVAL_BENCHMARK = "trainer_eval"
"""Benchmark name under which the trainer's in-loop evaluation (``eval_*`` log keys) is stored."""


# ---------------------------------------------------------------------------------------------------------
# Units: how every metric's logged value reads (reports, CSVs, power lines and ``status`` take them from here)
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """How a logged value is shown: ``shown = scale × logged``, with ``decimals`` decimals, named ``name``.

    ``effects``: the gains (logged scale) for which reports and ``plan`` give the seeds a test needs, shown
    ``scale × effect`` ``short`` (``seeds for 1 / 2 pts``)."""

    name: str
    """What the shown number is in: ``points``, ``tokens``, ``reward units``, ..."""
    scale: float = 1.0
    decimals: int = 3
    effects: tuple[float, ...] = (0.01, 0.02)
    short: str = ""
    """Short name after a number (``pts``); the name itself when empty."""
    logged: str = ""
    """What the logged value is in, when it differs from ``name`` (``fraction`` for points)."""

    def shown(self, value: float) -> float:
        """``scale × value``: the number a table shows (and a CSV holds) for logged ``value``."""
        return self.scale * value

    def format(self, value: float | None, signed: bool = False) -> str | None:
        """``value`` (logged scale) as shown, with :attr:`decimals` decimals (``+`` sign when ``signed``); ``None`` stays."""
        if value is None:
            return None
        return f"{self.scale * value:+.{self.decimals}f}" if signed else f"{self.scale * value:.{self.decimals}f}"

    @property
    def abbreviation(self) -> str:
        return self.short or self.name


UNIT_POINTS = Unit("points", 100.0, 1, (0.01, 0.02), "pts", "fraction")
"""A fraction in [0, 1] (accuracy, pass@k, clip fraction) shown in points (percent, one decimal)."""
UNIT_TOKENS = Unit("tokens", 1.0, 1, (1.0, 2.0))
UNIT_REWARD = Unit("reward units", 1.0, 3, (0.01, 0.02))
"""A reward as the task's reward functions give it (three decimals)."""
UNIT_COUNT = Unit("count", 1.0, 1, (1.0, 2.0))
UNIT_SECONDS = Unit("seconds", 1.0, 2, (1.0, 2.0), "s")
UNIT_TOKENS_PER_S = Unit("tokens/s", 1.0, 1, (1.0, 2.0))
UNIT_NATS = Unit("nats", 1.0, 3, (0.01, 0.02))
UNIT_VALUE = Unit("value", 1.0, 3, (0.01, 0.02))
"""A number with no unit of its own (loss, λ, gradient norm, a correlation, a metric this schema does not know),
shown as logged."""


@dataclass(frozen=True)
class MetricSpec:
    """A metric's :class:`Unit` and which way is better (``None``: neither, e.g. a length; no best is marked)."""

    unit: Unit
    higher_is_better: bool | None = None


EVAL_METRIC_SPECS: dict[str, MetricSpec] = {
    "acc": MetricSpec(UNIT_POINTS, True),
    "acc_stderr": MetricSpec(UNIT_POINTS, None),
    "mean_length": MetricSpec(UNIT_TOKENS, None),
    "n": MetricSpec(Unit("problems", 1.0, 0, (1.0, 2.0))),
    EVAL_SECONDS: MetricSpec(UNIT_SECONDS, None),
}
"""Units of the metric part of ``eval/<benchmark>/<metric>`` (``pass_<k>`` is :data:`UNIT_POINTS`, higher better)."""
TRAIN_METRIC_SPECS: dict[str, MetricSpec] = {
    TRAIN_REWARD_MEAN: MetricSpec(UNIT_REWARD, True),
    TRAIN_REWARD_STD: MetricSpec(UNIT_REWARD),
    TRAIN_ACCURACY: MetricSpec(UNIT_POINTS, True),
    TRAIN_COMPLETION_LENGTH_MEAN: MetricSpec(UNIT_TOKENS),
    TRAIN_COMPLETION_LENGTH_MIN: MetricSpec(UNIT_TOKENS),
    TRAIN_COMPLETION_LENGTH_MAX: MetricSpec(UNIT_TOKENS),
    TRAIN_INCORRECT_LENGTH_MEAN: MetricSpec(UNIT_TOKENS),
    TRAIN_CORRECT_LENGTH_MEAN: MetricSpec(UNIT_TOKENS),
    TRAIN_CLIP_FRACTION: MetricSpec(UNIT_POINTS),
    TRAIN_ENTROPY: MetricSpec(UNIT_NATS),
    TRAIN_KL: MetricSpec(UNIT_NATS),
    TRAIN_TOKENS_PER_S: MetricSpec(UNIT_TOKENS_PER_S, True),
    TRAIN_STEP_S: MetricSpec(UNIT_SECONDS, False),
    TRAIN_FRAC_ZERO_STD_GROUPS: MetricSpec(UNIT_POINTS),
    TRAIN_REWARD_TIMEOUTS: MetricSpec(UNIT_COUNT),
    TRAIN_HELDOUT_ACC: MetricSpec(UNIT_POINTS, True),
    TRAIN_LAMBDA_RATE_LIMITED: MetricSpec(UNIT_POINTS),
    TRAIN_GENERATION_BATCHES: MetricSpec(UNIT_COUNT),
    TRAIN_GROUPS_FILTERED_FRAC: MetricSpec(UNIT_POINTS),
    TRAIN_GROUP_FILTER_CAP_REACHED: MetricSpec(UNIT_POINTS),
    TRAIN_NONFINITE_VALUES: MetricSpec(UNIT_COUNT),
}
"""Units of the training metrics; ``train/style_share/<style>`` is :data:`UNIT_POINTS`; every other ``train/`` metric
(loss, λ, weights, gradient norm, learning rate, TRL's own keys) is :data:`UNIT_VALUE`, shown as logged."""
_PASS_AT_K_METRIC = re.compile(r"^pass_\d+$")


def metric_spec(name: str) -> MetricSpec:
    """The :class:`MetricSpec` of a metric: a full name (``eval/arith/acc``, ``train/reward_mean``) or the metric part
    of an eval metric (``acc``, ``pass_8``). Unknown names get :data:`UNIT_VALUE` and no better direction."""
    if name.startswith(TRAIN_PREFIX):
        if name.startswith(TRAIN_STYLE_SHARE_PREFIX):
            return MetricSpec(UNIT_POINTS)
        return TRAIN_METRIC_SPECS.get(name, MetricSpec(UNIT_VALUE))
    if name.startswith(EVAL_PREFIX):
        try:
            name = parse_eval_metric(name)[1]
        except ValueError:
            return MetricSpec(UNIT_VALUE)
    if _PASS_AT_K_METRIC.match(name):
        return MetricSpec(UNIT_POINTS, True)
    return EVAL_METRIC_SPECS.get(name, MetricSpec(UNIT_VALUE))


def _sanitize_segment(text: str) -> str:
    return _DISALLOWED_CHAR_RE.sub("_", str(text)).replace("/", "_").strip(".") or "_"


def eval_metric(benchmark: str, metric: str) -> str:
    """``eval/<benchmark>/<metric>``.

    ``benchmark`` may not contain ``/`` (it is replaced by ``_``) so :func:`parse_eval_metric` can split the
    name back; ``metric`` may. Characters MLflow rejects become ``_`` in both: lm-eval's
    ``exact_match,strict-match`` is stored as ``exact_match_strict-match``.
    """
    if not str(benchmark).strip() or not str(metric).strip():
        raise ValueError(f"eval_metric needs a non-empty benchmark and metric, got {benchmark!r}, {metric!r}")
    return strict_metric_name(f"{EVAL_PREFIX}{_sanitize_segment(benchmark)}/{metric}")


def parse_eval_metric(name: str) -> tuple[str, str]:
    """Inverse of :func:`eval_metric` (for names it produced): ``"eval/gsm8k/acc" -> ("gsm8k", "acc")``."""
    parts = name.split("/", 2)
    if len(parts) != 3 or parts[0] != "eval" or not parts[1] or not parts[2]:
        raise ValueError(f"{name!r} is not an eval metric name of the form eval/<benchmark>/<metric>")
    return parts[1], parts[2]


# ---------------------------------------------------------------------------------------------------------
# Params
# ---------------------------------------------------------------------------------------------------------
PARAM_TRUNCATION_MARKER = "...[truncated:"
"""Start of the note that ends a truncated param value: ``...[truncated: 12345 chars in full]``."""


def _param_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
        return json.dumps(items, default=str, sort_keys=True)
    return str(value)


def _truncate_param(key: str, text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    note = f"{PARAM_TRUNCATION_MARKER} {len(text)} chars in full]"
    _logger.warning(
        "param %r is %d characters long, over MLflow's limit of %d: logged truncated, ending in %r. "
        "Log the full value as an artifact (e.g. the resolved config file) if you need it.",
        key,
        len(text),
        limit,
        note,
    )
    return text[: limit - len(note)] + note


def flatten_params(nested: Mapping[str, Any], prefix: str = "", *, max_value_length: int = MAX_PARAM_VALUE_LENGTH) -> dict[str, str]:
    """Flatten a nested mapping into MLflow params: ``{"a": {"b": 1}} -> {"a.b": "1"}``.

    Contract:
      * keys are joined with ``.`` under ``prefix`` (``prefix="cfg"`` gives ``cfg.a.b``); key characters MLflow
        rejects are replaced by ``_``;
      * leaves are stringified: ``str`` as-is, lists/tuples as JSON (sets sorted), other values with ``str()``
        (``None -> "None"``, ``True -> "True"``);
      * an empty mapping is kept as the value ``"{}"``, so every key of the input is visible;
      * values over ``max_value_length`` (MLflow's 6000) are truncated to exactly that length, ending with
        ``...[truncated: N chars in full]``, and a warning is logged;
      * nothing is dropped silently: keys that collide after sanitizing, or keys too long for MLflow
        (250 characters), raise ``ValueError``.
    """
    flat: dict[str, str] = {}
    origin: dict[str, str] = {}

    def visit(node: Mapping[str, Any], path: str) -> None:
        for raw_key, value in node.items():
            raw_path = f"{path}.{raw_key}" if path else str(raw_key)
            if isinstance(value, Mapping) and value:
                visit(value, raw_path)
                continue
            key = _DISALLOWED_CHAR_RE.sub("_", raw_path)
            if len(key) > MAX_PARAM_KEY_LENGTH:
                raise ValueError(
                    f"param key {raw_path[:80]!r}... is {len(key)} characters, over MLflow's limit of "
                    f"{MAX_PARAM_KEY_LENGTH}; shorten the config key or log that section as an artifact"
                )
            if key in flat:
                raise ValueError(
                    f"config keys {origin[key]!r} and {raw_path!r} both flatten to param {key!r}; rename one"
                )
            text = "{}" if isinstance(value, Mapping) else _param_string(value)
            flat[key] = _truncate_param(key, text, max_value_length)
            origin[key] = raw_path

    visit(nested, prefix)
    return flat


def unflatten_params(flat: Mapping[str, str], prefix: str = "") -> dict[str, Any]:
    """Rebuild the nesting of :func:`flatten_params` output (values stay strings; ``"{}"`` becomes ``{}``).

    With ``prefix``, only keys under it are used and the prefix is removed. Round trip:
    ``unflatten_params(flatten_params(d)) == d`` with every leaf stringified, for ``d`` whose keys contain no
    ``.`` and no characters MLflow rejects.
    """
    nested: dict[str, Any] = {}
    lead = f"{prefix}." if prefix else ""
    for key, value in flat.items():
        if lead and not key.startswith(lead):
            continue
        parts = key[len(lead) :].split(".")
        node = nested
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"param {key!r} conflicts with a leaf value at {part!r}")
            node = child
        node[parts[-1]] = {} if value == "{}" else value
    return nested


__all__ = sorted(
    name for name, value in list(globals().items())
    if not name.startswith("_") and (name.isupper() or (callable(value) and getattr(value, "__module__", None) == __name__))
)
"""Every constant (tag keys and values, metric and artifact names, limits) and every function of the schema."""

"""Typed run configuration: the single source of truth for every option.

YAML files, ``--set`` overrides, the JSON Schema (``lgrpo-bench config schema``) and the MLflow params of
a run all derive from these models. Unknown keys are errors. Every field states its meaning, its unit and,
where it matters, where its default comes from. The ``algorithm`` section's hyperparameter fields derive in turn from
the declarations in the axis values' modules (``lgrpo_bench.algorithms``, the one package below ``config``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from lgrpo_bench.algorithms.presets import (
    DEFAULT_PRESET,
    ConfigField,
    axis_field_description,
    config_fields,
    preset_field_description,
)

SEED_MAX = 2**32 - 1
"""The largest seed numpy, torch and vLLM all accept (numpy's ``np.random.seed`` stops at 2³² − 1)."""


def _seed(default: int, description: str):
    return Field(default, ge=0, le=SEED_MAX, description=f"{description} (0 … 2³² − 1)")



def default_cache_dir() -> Path:
    """``$LGRPO_CACHE_DIR`` if set, else ``~/.cache/lgrpo-bench``: built tiny models (where ``tracking.cache_dir`` is
    unset) and the empty MLflow store new SQLite stores are copied from (``tracking/store.py``)."""
    env = os.environ.get("LGRPO_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lgrpo-bench"

class _Strict(BaseModel):
    """Base of every run-config model: unknown keys are errors, and so is a float that is not finite (inf, -inf,
    nan: a reward weight of inf made every reward inf, so the model never changed and the run ended done)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


def _unit(unit: str) -> dict:
    return {"unit": unit}


class ModelConfig(_Strict):
    """Which policy model to train."""

    name: str = Field(
        "tiny-s",
        description="A tiny preset (tiny-s, tiny-m, tiny-l: built and warm-started locally), a Qwen preset "
        "(qwen2.5-1.5b, qwen2.5-3b, qwen2.5-7b, qwen2.5-math-1.5b, qwen2.5-math-7b), a local folder or a hub id",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights and compute dtype: auto = bfloat16 on CUDA, float32 on CPU"
    )
    warm_start_steps: int | None = Field(
        None, ge=1, description="Tiny presets only: SFT step budget of the warm start; its validation stopping "
        "rule usually ends it earlier (at least 1; None = the preset's budget)",
        json_schema_extra=_unit("optimizer steps"),
    )
    warm_start_seed: int = _seed(0, "Tiny presets only: seed of the warm start (shared by all RL seeds)")


class TaskConfig(_Strict):
    """Training data, prompt template and reward."""

    name: Literal["arith", "lenmix", "math"] = Field(
        "arith", description="arith: synthetic a+b with worked or direct answers; lenmix: the same problems with "
        "a wide spread of completion lengths tied to correctness both ways (direct, worked, and a long 'ramble' "
        "without computation; docs/TESTBED.md), tiny presets warm-started for it; math: MATH training problems"
    )
    data: str | None = Field(
        None,
        description="math: a JSONL file or a folder holding math_train.jsonl ({id, problem, answer}); "
        "None = the hub (EleutherAI/hendrycks_math)",
    )
    levels: list[int] | None = Field(None, description="math: MATH difficulty levels to keep (1-5); None = all")
    digits: list[int] = Field([2, 3], description="arith, lenmix: operand digit counts, drawn uniformly")
    num_train_problems: int = Field(4000, ge=1, description="arith, lenmix: training problems generated",
                                    json_schema_extra=_unit("problems"))
    num_heldout_problems: int = Field(500, ge=1, description="arith, lenmix: held-out test problems, disjoint from training",
                                      json_schema_extra=_unit("problems"))
    data_seed: int = Field(
        0, ge=0, le=SEED_MAX, description="arith, lenmix: seed of problem generation (fixed across runs, unlike train.seed); tiny presets "
        "were warm-started on problems outside the held-out split of seed 0, so keep 0 with them (0 … 2³² − 1)",
    )
    template: str | None = Field(None, description="Prompt template (arith, qwen_math, r1); None = the task's default")
    reward_timeout_s: float = Field(5.0, gt=0, description="Upper bound on one reward call", json_schema_extra=_unit("s"))
    format_reward_weight: float = Field(0.0, ge=0, description="Weight of a format reward (answer boxed); 0 = off")

    @field_validator("digits")
    @classmethod
    def _digits_range(cls, value: list[int]) -> list[int]:
        if not value or any(d < 1 or d > 9 for d in value):
            raise ValueError("digits must be a non-empty list of integers between 1 and 9")
        return value

    @field_validator("levels")
    @classmethod
    def _levels_range(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(lv < 1 or lv > 5 for lv in value)):
            raise ValueError("levels must be a non-empty list of MATH levels between 1 and 5")
        return value


class _AlgorithmChoices(_Strict):
    """The preset and the four axis values of ``algorithm`` (see :data:`AlgorithmConfig`)."""

    name: str = Field(DEFAULT_PRESET, description=preset_field_description())
    aggregation: str | None = Field(None, description=axis_field_description("aggregation"))
    surrogate: str | None = Field(None, description=axis_field_description("surrogate"))
    advantage: str | None = Field(None, description=axis_field_description("advantage"))
    group_filter: str | None = Field(None, description=axis_field_description("group_filter"))


def _hyperparameter_field(declared: ConfigField) -> tuple[object, object]:
    kind = Literal[declared.choices] if declared.choices else declared.kind  # type: ignore[valid-type]
    return kind | None, Field(None, description=declared.description, **declared.bounds)


AlgorithmConfig = create_model(
    "AlgorithmConfig",
    __base__=_AlgorithmChoices,
    __module__=__name__,
    __doc__="""Which GRPO-family loss: a preset (``name``) that sets four axes and their hyperparameters, each of
    which may be overridden (lgrpo_bench.algorithms; ``lgrpo-bench algorithms`` lists them). Hyperparameters the
    chosen axis values do not use are ignored and left out of the run id.

    The axis values and their hyperparameters are not written here: each value's module declares its
    hyperparameters once (name, default, description, bounds; ``HYPERPARAMETERS``), and the fields ``algorithm.<name>``
    follow from those declarations (:func:`lgrpo_bench.algorithms.presets.config_fields`), as do the descriptions of
    the axis fields (each module's ``SUMMARY``). A prepared run's ``config.yaml`` states every one of them resolved.""",
    **{declared.name: _hyperparameter_field(declared) for declared in config_fields()},
    mask_truncated_completions=(bool | None, Field(
        None, description="Completions that hit max_completion_length without EOS get no loss (DAPO §3.4); None = the "
        "preset's (true for dapo_full)",
    )),
    overlong_penalty=(bool | None, Field(
        None, description="Add DAPO's soft overlong punishment to the reward (DAPO §3.4); None = the preset's (true for "
        "dapo_full)",
    )),
    overlong_buffer_tokens=(int | None, Field(
        None, ge=1, description="overlong_penalty: soft punishment buffer; None = 20 % of max_completion_length "
        "(DAPO: 4,096 of 20,480)", json_schema_extra=_unit("tokens"),
    )),
)


class TrainConfig(_Strict):
    """RL trainer options. Every TRL default that assumes a GPU is set explicitly from here."""

    seed: int = _seed(0, "Seed of every random source of training: prompt order, HF or vLLM sampling (engine and per-request seeds, derived with the process index and step), dropout, trainer state")
    max_steps: int = Field(40, ge=1, description="Optimizer steps", json_schema_extra=_unit("steps"))
    num_generations: int = Field(8, ge=2, description="G: completions sampled per prompt")
    prompts_per_step: int = Field(8, ge=1, description="Prompts per optimizer step on each process (P processes train "
                                  "on P·prompts_per_step prompts, prompts_per_step·G completions each)",
                                  json_schema_extra=_unit("prompts"))
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step (the loss is invariant to it)")
    max_completion_length: int = Field(40, ge=1, description="L_max: generation cap", json_schema_extra=_unit("tokens"))
    learning_rate: float = Field(3e-5, gt=0, description="Policy learning rate (3e-5 separates the algorithms on tiny presets, benchmarks/rl_improvement.py; DAPO: 1e-6 for 7B)")
    lr_scheduler: Literal["constant", "constant_with_warmup", "cosine", "linear"] = Field("constant", description="LR schedule (λ follows it too)")
    warmup_steps: int = Field(0, ge=0, description="LR warm-up steps", json_schema_extra=_unit("steps"))
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay of the policy")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping of the policy (λ is not clipped); 0 = off")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of rollouts")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of rollouts")
    top_k: int = Field(0, ge=0, description="Top-k sampling of rollouts (0 = off)")
    beta: float = Field(0.0, ge=0, description="KL coefficient β (DAPO, Dr. GRPO and TRL use 0)")
    kl_importance_correction: bool = Field(
        False, description="Multiply the KL term by the ratio ρ (DeepSeek-V3.2; TRL 1.16's default is on); "
        "off = the k3 estimator of GRPO as published. Matters only when beta > 0",
    )
    num_iterations: int = Field(1, ge=1, description="μ: optimisation passes over each generation batch")
    use_vllm: bool = Field(False, description="vLLM rollouts (GPU, needs the vllm extra)")
    vllm_importance_sampling_correction: bool = Field(
        True, description="TRL's correction of the vLLM-vs-trainer mismatch (on in TRL 1.16); with vLLM it is biased "
        "when top_p < 1 or top_k > 0 (TRL #6789), so that combination is refused: turn it off or sample untruncated",
    )
    bf16: bool | None = Field(None, description="bf16 mixed precision; None = on with CUDA, off on CPU")
    gradient_checkpointing: bool = Field(False, description="Activation checkpointing (large models on GPU)")
    heldout_every: int = Field(5, ge=0, description="Greedy held-out accuracy every K steps (0 = off)", json_schema_extra=_unit("steps"))
    heldout_size: int = Field(200, ge=1, description="Held-out problems scored each time", json_schema_extra=_unit("problems"))
    save_every: int = Field(20, ge=0, description="Checkpoint every K steps (0 = only at the end)", json_schema_extra=_unit("steps"))
    samples_every: int = Field(20, ge=0, description="Log a table of sample completions every N steps (0 = off)", json_schema_extra=_unit("steps"))
    num_threads: int | None = Field(None, ge=1, description="CPU threads for torch; None = 1 for models under 20M parameters on CPU, else torch's default")


class TrackingConfig(_Strict):
    """Where results go. Not part of a run's identity."""

    uri: str | None = Field(None, description="MLflow tracking URI; None = $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db")
    experiment: str = Field("lgrpo-bench", description="MLflow experiment name")
    runs_dir: str = Field("runs", description="Folder of run directories (checkpoints, logs): <runs_dir>/<run_id>/")
    cache_dir: str | None = Field(None, description="Cache of built tiny models; None = $LGRPO_CACHE_DIR or ~/.cache/lgrpo-bench")
    grid: str | None = Field(None, description="Name of the grid this run belongs to (tag lgrpo.grid)")


class BenchmarkEvalConfig(_Strict):
    """Protocol of one benchmark, overriding the task pack's defaults (see lgrpo_bench.evaluation.benchmarks)."""

    k: int | None = Field(None, ge=1, description="Samples per problem (avg@k; 1 with temperature 0 = greedy); None = the benchmark's default")
    temperature: float | None = Field(None, ge=0, description="Sampling temperature; 0 = greedy (then k must be 1); None = the benchmark's default")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling of avg@k; None = the benchmark's default (0.95 for AIME/AMC)")
    max_tokens: int | None = Field(None, ge=1, description="Generation limit; None = the benchmark's default (3000; arith 40)",
                                   json_schema_extra=_unit("tokens"))
    template: str | None = Field(
        None, description="Prompt template (qwen_math, r1, arith); None = the run's training template for math benchmarks "
        "(qwen_math when that is arith or there is no run) and arith for the arith benchmark",
    )


class EvalConfig(_Strict):
    """Evaluation on math benchmarks through lm-eval, after training (lgrpo-bench eval). Not part of a run's identity:
    each evaluation is identified by its own tags (lgrpo.eval.<benchmark>.<field>)."""

    benchmarks: list[str] = Field([], description="Benchmarks evaluated after training (e.g. arith, math500)")
    data_dir: str | None = Field(None, description="Offline benchmark folder (<benchmark>.jsonl); None = $LGRPO_DATA_DIR or the hub")
    backend: Literal["auto", "hf", "vllm"] = Field(
        "auto", description="Generation backend: hf (transformers via lm-eval's HFLM), vllm (lm-eval's vLLM model, needs the "
        "vllm extra and a GPU); auto = vllm when installed and CUDA is available, else hf",
    )
    batch_size: int | Literal["auto"] = Field(
        "auto", description="Prompts per generation batch (hf; at least 1); auto = lm-eval's largest-fitting batch on GPU, on CPU 64 for "
        "models under 20M parameters and 8 otherwise; vllm schedules its own batches",
    )
    max_batch_size: int = Field(64, ge=1, description="Upper bound of the automatic batch size (hf on GPU; vllm max_num_seqs)")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs one model is split across")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vllm: fraction of GPU memory vLLM may reserve")
    seed: int = _seed(0, "Seed of sampling (avg@k protocols); greedy results do not depend on it")
    limit: int | None = Field(None, ge=1, description="Evaluate only the first N problems of each benchmark (smoke tests; "
                              "the logged problem count and hash say so)", json_schema_extra=_unit("problems"))
    overrides: dict[str, BenchmarkEvalConfig] = Field(
        {}, description="Per-benchmark protocol overrides, e.g. {aime24: {k: 64, temperature: 0.6}}",
    )

    @field_validator("benchmarks")
    @classmethod
    def _listed_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each benchmark may be listed once")
        return value

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1, or auto")
        return value


class RunConfig(_Strict):
    """One training run: model × task × algorithm × trainer options."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> "RunConfig":
        """Checks between fields of the config itself; checks against the registries (algorithm presets and axes,
        models, benchmarks, templates, the tiny presets' held-out split) are the resolve step's
        (``lgrpo_bench.runs.resolve.run_problems``)."""
        if self.train.prompts_per_step % self.train.gradient_accumulation_steps:
            raise ValueError(
                f"train.prompts_per_step={self.train.prompts_per_step} must be a multiple of "
                f"train.gradient_accumulation_steps={self.train.gradient_accumulation_steps}"
            )
        if self.task.name == "math" and self.task.template == "arith":
            raise ValueError("task.template=arith only fits task.name=arith or lenmix")
        return self

    @property
    def resolved_template(self) -> str:
        return self.task.template or ("arith" if self.task.name in ("arith", "lenmix") else "qwen_math")


#: Sections and fields that do not change results, left out of the run identity.
IDENTITY_EXCLUDED = {"tracking": None, "eval": None, "train": {"samples_every", "num_threads"}}
#: Fields added after run ids were first stored (pinned by tests/test_run_ids_pinned.py), left out of the run identity
#: while they hold the value every earlier run had, so those runs keep their ids; any other value enters the identity.
IDENTITY_OMITTED_AT_DEFAULT = {"train": {"vllm_importance_sampling_correction": True}}

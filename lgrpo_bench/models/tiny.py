"""Tiny Qwen2 presets: building a warm start (SFT on the arith task, stopped by a validation rule) and caching it.

Presets (Qwen2 architecture, tied embeddings, the 260-token vocabulary of :mod:`lgrpo_bench.models.tokenizer`;
shapes and recipes in :mod:`lgrpo_bench.models.presets`):

    preset  hidden  layers  heads/kv  intermediate  params     lr    init std  step budget  first check
    tiny-s  64      3       4/2       256           201,792    3e-3  0.02      3000         300
    tiny-m  96      4       6/2       384           567,136    3e-3  0.05      1500         100
    tiny-l  128     5       8/2       512           1,223,488  2e-3  0.05      1500         100

Warm-start recipe (:data:`~lgrpo_bench.models.presets.RECIPE_VERSION` 2; the loop is
:func:`lgrpo_bench.models.sft.run_sft`): SFT on arith training problems (digits (2, 3); the held-out test split
and the validation split excluded), completions 30 % worked / 70 % direct, each followed by
``<|endoftext|>``, loss = token mean over completion tokens only; batch 64, AdamW (β 0.9/0.98, weight decay
0.01 on matrices only), 50 linear warm-up steps then the constant peak lr, gradient clipping 1.0.
**Stopping rule**: greedy accuracy on the first 300 problems of the validation split
(:func:`lgrpo_bench.tasks.arith.validation_problems`, disjoint from the SFT stream and from the test split:
nothing is selected on the test split) is measured every 25 steps from the preset's first check on; the SFT
stops at the first check inside the target 0.30–0.50; a jump over the target keeps the check closest to it,
and a spent budget keeps the closest check too (:func:`lgrpo_bench.models.sft.stop_decision`). The outcome
then depends on where the model is, not on how many steps a machine's rounding needed: greedy accuracy is
bimodal (before the "click" of direct 2-digit answers ~0.05–0.15, after it ~0.45–0.6) and when the click
comes depends on the seed and on the CPU's kernels (constant lr: tiny-s clicked after 750 to 1,825 steps
over seeds 0..4). The target is a little below the band's middle because the validation split holds fewer
two-digit problems than the test split (49 % vs 56 %): held-out greedy accuracy comes out 0.022 above
validation accuracy on average (−0.035 to +0.085 over the 15 builds of 3 presets × seeds 0..4). Run single-threaded (``torch.set_num_threads(1)``), so the weights are bit-identical
for the same (preset, seed, budget) on the same machine. ``seed`` sets the initialisation, the SFT problem
stream and the worked/direct draw. The held-out split is :func:`~lgrpo_bench.tasks.arith.train_test_split`
with ``ARITH_SPLIT_SEED``/``ARITH_N_TEST``/``ARITH_DEFAULT_DIGITS``
(:func:`lgrpo_bench.models.heldout.heldout_problems`).

The band: a build reports (``emit``) one warning line when its held-out greedy accuracy lies outside
:data:`~lgrpo_bench.models.presets.WARM_START_BAND` (0.25–0.65); ``TinyBuildResult.band`` is the verdict.

Tuning notes (measured here): TINY_RL's lr 5e-3 was too high for the wider models (0.57M: 17 % greedy after
1,000 steps at 5e-3, 55 % at 3e-3; 1.2M at 400 steps: 2e-3 > 5e-3 > 1e-2), and also for tiny-s. An init std of
0.05 halved the steps tiny-m/tiny-l need. Recipe 1 (a fixed step budget, cosine decay) landed tiny-s seed 2 at
0.056 and seed 0 at 0.082 on an AVX2 CPU (0.430 on the CPU it was tuned on): hence the stopping rule.

Measured warm starts (3 presets × seeds 0..4, all in the band): README.md, *Measured*, "Warm starts"
(``benchmarks/warm_start.py``).

Cache layout: ``<cache_dir>/<preset>-seed<seed>-steps<budget>-v<RECIPE_VERSION>-<digest of the preset's
recipe>/`` holds ``config.json``, ``model.safetensors``, the tokenizer files, ``generation_config.json`` and
``metrics.json``. Builds go to a temporary folder in ``cache_dir`` and are moved into place with
``os.replace``; an ``fcntl`` lock per key makes concurrent builders of the same key wait for the first one
and reuse its result (POSIX file systems with working ``flock``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

from lgrpo_bench.models.heldout import (
    GROUP_SIZE,
    greedy_accuracy,
    heldout_problems,
    sampled_group_stats,
    torch_threads,
)
from lgrpo_bench.models.presets import (
    RECIPE_VERSION,
    TINY_PRESETS,
    BandVerdict,
    TinyPreset,
    get_preset,
    warm_start_band_check,
)
from lgrpo_bench.models.sft import ProgressFn, run_sft
from lgrpo_bench.models.tokenizer import EOS_TOKEN, make_tokenizer
from lgrpo_bench.tasks.arith import ARITH_DEFAULT_DIGITS, ARITH_N_TEST, ARITH_SPLIT_SEED, validation_problems
from lgrpo_bench.tracking.provenance import provenance_tags

__all__ = [
    "RECIPE_VERSION",
    "TINY_PRESETS",
    "EmitFn",
    "ProgressFn",
    "TinyBuildResult",
    "TinyPreset",
    "build_tiny",
    "default_cache_dir",
    "make_tiny_model",
]

LOG = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"
SAMPLED_EVAL_PROMPTS = 128
"""Held-out prompts used for the sampled (T = 1) statistics of a warm start."""

EmitFn = Callable[[str], None]
"""Receives the lines a build reports (its stop, an out-of-band warning)."""


@dataclass
class TinyBuildResult:
    """A built (or cached) warm start: ``path`` loads with ``AutoModelForCausalLM``/``AutoTokenizer``."""

    path: Path
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def cached(self) -> bool:
        return bool(self.metrics.get("cached", False))

    @property
    def band(self) -> BandVerdict:
        """Whether the held-out greedy accuracy lies in the presets' band (:func:`warm_start_band_check`)."""
        acc = self.metrics.get("greedy_acc")
        return warm_start_band_check(str(self.metrics.get("preset")), int(self.metrics.get("seed", -1)),
                                     float("nan") if acc is None else float(acc))


def default_cache_dir() -> Path:
    """``$LGRPO_CACHE_DIR`` if set, else ``~/.cache/lgrpo-bench``."""
    env = os.environ.get("LGRPO_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lgrpo-bench"


def make_tiny_model(preset: str | TinyPreset, tokenizer: PreTrainedTokenizerBase, *, seed: int = 0) -> Qwen2ForCausalLM:
    """A freshly initialised float32 ``Qwen2ForCausalLM`` of the preset's shape (init seeded by ``seed``).

    The global torch RNG state is left as it was.
    """
    spec = get_preset(preset)
    if spec.hidden_size % spec.heads or spec.heads % spec.kv_heads:
        raise ValueError(f"{spec.name}: hidden_size must divide by heads and heads by kv_heads")
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        initializer_range=spec.init_std,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        use_cache=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = eos_id
    model.generation_config.bos_token_id = None
    return model


def _n_params(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------ building


def _spec_digest(spec: TinyPreset) -> str:
    """Short hash of everything in the preset but its name and default step budget."""
    fields = {k: v for k, v in asdict(spec).items() if k not in ("name", "sft_steps")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]


def _cache_key(spec: TinyPreset, seed: int, steps: int, eval_problems: int, sampled_prompts: int) -> str:
    key = f"{spec.name}-seed{seed}-steps{steps}-v{RECIPE_VERSION}-{_spec_digest(spec)}"
    if (eval_problems, sampled_prompts) != (ARITH_N_TEST, SAMPLED_EVAL_PROMPTS):
        key += f"-eval{eval_problems}x{sampled_prompts}"
    return key


def _read_metrics(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / METRICS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _build_into(
    folder: Path,
    spec: TinyPreset,
    seed: int,
    steps: int,
    progress: ProgressFn | None,
    eval_problems: int,
    sampled_prompts: int,
) -> dict[str, Any]:
    """Train and evaluate one warm start and save everything into ``folder``; returns its metrics."""
    tokenizer = make_tokenizer(padding_side="left")
    model = make_tiny_model(spec, tokenizer, seed=seed)
    validation = validation_problems(spec.stop.validation_size)
    validation_seconds = [0.0]

    def validate() -> float:
        started = time.process_time()
        accuracy = greedy_accuracy(model, tokenizer, validation)["acc"]
        validation_seconds[0] += time.process_time() - started
        return accuracy

    # One thread: bit-reproducible, and on a small shared CPU much faster for models this size (two
    # OpenMP threads on two busy cores made generation 10x slower in our measurements).
    with torch_threads(1):
        started, started_cpu = time.perf_counter(), time.process_time()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            outcome = run_sft(model, tokenizer, spec, steps, seed, validate=validate, progress=progress)
        sft_seconds, sft_cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu

        started = time.perf_counter()
        test = heldout_problems(max(eval_problems, sampled_prompts))
        greedy = greedy_accuracy(model, tokenizer, test[:eval_problems])
        sampled = sampled_group_stats(model, tokenizer, test[:sampled_prompts], group_size=GROUP_SIZE, seed=seed)
        eval_seconds = time.perf_counter() - started

    decision = outcome.decision
    kept = decision.step if decision is not None else outcome.steps_run
    losses = outcome.losses[:kept]
    metrics: dict[str, Any] = {
        "preset": spec.name,
        "seed": seed,
        "sft_steps": kept,
        "sft_max_steps": steps,
        "sft_steps_run": outcome.steps_run,
        "stop_reason": decision.reason if decision is not None else None,
        "validation_acc": decision.acc if decision is not None else None,
        "validation_checks": [[step, acc] for step, acc in outcome.checks],
        "recipe_version": RECIPE_VERSION,
        "n_params": _n_params(model),
        "sft_seconds": round(sft_seconds, 2),
        "sft_cpu_seconds": round(sft_cpu_seconds, 2),
        "validation_cpu_seconds": round(validation_seconds[0], 2),
        "eval_seconds": round(eval_seconds, 2),
        "final_loss": float(sum(losses[-20:]) / len(losses[-20:])) if losses else None,
        "greedy_acc": greedy["acc"],
        "greedy_acc_2digit": greedy.get("acc_2digit", float("nan")),
        "greedy_acc_3digit": greedy.get("acc_3digit", float("nan")),
        "worked_share_greedy": greedy["worked_share"],
        "greedy_mean_length": greedy["mean_length"],
        "sampled_acc_t1": sampled["acc"],
        "worked_share_sampled": sampled["worked_share"],
        "sampled_acc_worked": sampled["acc_worked"],
        "sampled_acc_direct": sampled["acc_direct"],
        "mixed_group_fraction": sampled["mixed_group_fraction"],
        "sampled_mean_length": sampled["mean_length"],
        "sampled_prompts": sampled["n_prompts"],
        "group_size": GROUP_SIZE,
        "heldout": {"split_seed": ARITH_SPLIT_SEED, "n_test": ARITH_N_TEST, "digits": list(ARITH_DEFAULT_DIGITS)},
        "preset_spec": asdict(spec),
        "torch_version": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "provenance": provenance_tags(use_cuda=False),  # the machine that built it, tagged on its warm-start run
    }
    # NaN (e.g. no worked samples) is stored as null; returning the JSON round trip makes a fresh build's
    # metrics equal to a cached load's.
    text = json.dumps(_nan_to_none(metrics), indent=2, sort_keys=True, allow_nan=False)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    (folder / METRICS_FILE).write_text(text)
    return json.loads(text)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def _report(result: TinyBuildResult, emit: EmitFn | None) -> None:
    """The build's stop line (fresh builds) and, when out of band, the one warning line."""
    m = result.metrics
    lines = []
    if not result.cached and m.get("stop_reason") is not None:
        lines.append(f"warm start {m['preset']} seed {m['seed']}: SFT kept step {m['sft_steps']} of at most "
                     f"{m['sft_max_steps']} ({m['stop_reason']}, validation greedy {m['validation_acc']:.3f}); "
                     f"held-out greedy {m['greedy_acc']:.3f}")
    warning = result.band.warning
    if warning is not None:
        lines.append(warning)
    for line in lines:
        if emit is not None:
            emit(line)
        else:
            LOG.log(logging.WARNING if line is warning else logging.INFO, line)


def build_tiny(
    preset: str | TinyPreset,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    sft_steps: int | None = None,
    progress: ProgressFn | None = None,
    emit: EmitFn | None = None,
    eval_problems: int = ARITH_N_TEST,
    sampled_prompts: int = SAMPLED_EVAL_PROMPTS,
) -> TinyBuildResult:
    """Return the warm-started tiny model for ``(preset, seed, sft_steps)``, building it if not cached.

    ``preset`` is a name of :data:`TINY_PRESETS` or a custom :class:`TinyPreset` (e.g. a different worked
    fraction); the cache key includes the recipe's digest, so a custom spec never reuses a preset's build.
    ``cache_dir`` defaults to :func:`default_cache_dir`; ``sft_steps`` (the step budget: the stopping rule
    usually ends the SFT earlier) to the preset's.
    ``progress(step, max_steps, loss)`` is called after each SFT step of a fresh build; ``emit(line)`` gets
    the build's stop line and, built or cached, ONE warning line when the held-out greedy accuracy lies
    outside :data:`~lgrpo_bench.models.presets.WARM_START_BAND` (without ``emit`` the warning goes to the
    ``lgrpo_bench.models.tiny`` logger). The result's ``metrics`` holds ``greedy_acc``, ``greedy_acc_2digit``,
    ``greedy_acc_3digit``, ``worked_share_greedy``, ``sampled_acc_t1``, ``worked_share_sampled``,
    ``mixed_group_fraction``, ``n_params``, ``sft_steps`` (the steps of the kept weights), ``sft_max_steps``,
    ``sft_steps_run``, ``stop_reason``, ``validation_acc``, ``validation_checks``, ``sft_seconds``,
    ``sft_cpu_seconds`` and ``cached`` (True when this call built nothing); ``band`` is its verdict.
    Safe when several processes build the same key at once: one builds, the others wait on a file lock
    and reuse it.

    ``eval_problems`` (greedy) and ``sampled_prompts`` (× 8 samples at T = 1) size the held-out evaluation
    stored in ``metrics``; non-default sizes (for quick tests) get their own cache key.
    """
    spec = get_preset(preset)
    steps = spec.sft_steps if sft_steps is None else int(sft_steps)
    if steps < 1:
        raise ValueError(f"sft_steps must be >= 1, got {steps}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    if not 1 <= eval_problems <= ARITH_N_TEST or not 1 <= sampled_prompts <= ARITH_N_TEST:
        raise ValueError(f"eval_problems and sampled_prompts must be in 1..{ARITH_N_TEST}")
    key = _cache_key(spec, seed, steps, eval_problems, sampled_prompts)
    final = root / key

    metrics = _read_metrics(final)
    if metrics is None:
        with open(root / f".{key}.lock", "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                metrics = _read_metrics(final)
                if metrics is None:
                    if final.exists():  # a folder without metrics is not ours to trust: rebuild it
                        shutil.rmtree(final)
                    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
                    try:
                        built = _build_into(tmp, spec, seed, steps, progress, eval_problems, sampled_prompts)
                        os.replace(tmp, final)
                    except BaseException:
                        shutil.rmtree(tmp, ignore_errors=True)
                        raise
                    result = TinyBuildResult(path=final, metrics={**built, "cached": False})
                    _report(result, emit)
                    return result
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    result = TinyBuildResult(path=final, metrics={**metrics, "cached": True})
    _report(result, emit)
    return result

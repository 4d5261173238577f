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

Measured warm starts (3 presets × seeds 0..4, all in the band): docs/measurements.md, "Warm starts"
(``benchmarks/warm_start.py``).

Shipped bases: the warm starts the quickstart, the robustness benchmark and the findings start from are data, not a
build product: each CPU's kernels round differently, so a build on another machine lands elsewhere (0.392 vs 0.294
greedy for the same tiny-s seed on an AVX2 and an AVX-512 CPU) and moves every algorithm more than algorithms
differ. They are shipped in the package under :data:`SHIPPED_DIR` (``lgrpo_bench/models/bases/<key>/``, one
folder per cache key, the cache layout below; ``MANIFEST.json`` records each one's recipe, commit, CPU and
hashes; ``scripts/ship_bases.py`` builds and replaces them). :func:`build_tiny` looks there first: a shipped
base whose key matches and whose files verify is used as is (read-only, nothing written); one that fails its
hashes is named in one line and the cache serves instead. Keys that are not shipped (other seeds, budgets,
custom recipes) are built and cached as below. Runs record the base by hash (``lgrpo.base_model.sha256``) and
where it came from (``lgrpo.base_model.source``: shipped, cache or built).

Cache layout: ``<cache_dir>/<preset>-seed<seed>-steps<budget>-v<RECIPE_VERSION>-<digest of the preset's
recipe>/`` holds ``config.json``, ``model.safetensors``, the tokenizer files, ``generation_config.json`` and
``metrics.json``. Builds go to a temporary folder ``<cache_dir>/.<key>.tmp-*`` and are moved into place with
``os.replace`` (metrics.json, written last, marks a folder complete); an ``fcntl`` lock per key
(``<cache_dir>/.<key>.lock``) makes concurrent builders of the same key wait for the first one and reuse its
result (POSIX file systems with working ``flock``). Folders and files get the usual umask modes (not
``mkdtemp``'s 0700), so that other users of a shared cache can read them.

Verification (every use of a cached build): ``metrics.json`` records the size and SHA-256 of every file of
the build (``files``: ``{name: {"bytes", "sha256"}}``; ``TinyBuildResult.model_hash`` is model.safetensors'),
and a cached build is used only when every listed file is there with that size and hash. A build that fails
(a truncated ``model.safetensors``, an edited tokenizer, an unreadable metrics.json) is rebuilt under the
key's lock, with one line through ``emit`` naming the file and what is wrong. Verifying costs little
(measured here, files in the page cache, sha256 at ~0.9 GB/s): 0.6 ms for tiny-s (0.8 MB of files), 2.5 ms
for tiny-m (2.3 MB), 5.3 ms for tiny-l (4.9 MB); the structural check of a legacy build below takes < 1 ms.

Builds cached before hashes existed (a metrics.json without ``files``) cannot be verified: there is no
record of what their files should be. They are neither trusted blindly nor rebuilt: rebuilding would cost
minutes and, on a CPU whose kernels differ from the builder's, give different weights, silently changing the
start of runs compared with earlier ones. Instead such a build must be *structurally* complete: every
required file present, every JSON file parsing, and ``model.safetensors``' header fitting the file with its
tensors' data ending exactly at the end of the file (what a truncated or partially written file fails).
Corruption that keeps the size (flipped bits inside tensor data) goes unnoticed for these builds only. A
legacy build that passes is used and, when the cache is writable, its hashes are recorded (metrics.json
replaced atomically, under the key's lock), so from then on it is verified like any other; one that fails is
rebuilt like a corrupt build.

Stuck states healed: a build killed mid-way (SIGKILL, power loss) leaves a ``.<key>.tmp-*`` folder; the next
call for that key that holds its lock (so no live build of the key can own one) removes every such folder: the
next builder, or, beside a verified build, a call that finds the lock free (it does not wait for it).
An exception (or Ctrl-C) during a build removes its own temporary folder. A read-only cache (a shared cache,
an immutable folder) is fine as long as it holds a complete, verified build: reading needs no lock (a build
is only ever replaced as a whole, atomically) and writes nothing; when the build is missing or corrupt there,
:class:`WarmStartCacheError` names the folder and says to point ``LGRPO_CACHE_DIR`` / ``tracking.cache_dir``
at a writable folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

from lgrpo_bench.config.schema import default_cache_dir
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
    "WarmStartCacheError",
    "build_tiny",
    "SHIPPED_DIR",
    "default_cache_dir",
    "make_tiny_model",
    "shipped_keys",
]

LOG = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"
SAMPLED_EVAL_PROMPTS = 128
"""Held-out prompts used for the sampled (T = 1) statistics of a warm start."""

EmitFn = Callable[[str], None]
"""Receives the lines a build reports (its stop, an out-of-band warning, a corrupt cached build rebuilt)."""

SHIPPED_DIR = Path(__file__).resolve().parent / "bases"
"""Bases shipped with the package: one folder per cache key, laid out like a cache entry (module docstring)."""
FILES_KEY = "files"
"""The key of ``metrics.json`` that records every other file of the build: ``{name: {"bytes", "sha256"}}``."""
MODEL_FILE = "model.safetensors"
REQUIRED_FILES = ("config.json", MODEL_FILE, "tokenizer.json", "tokenizer_config.json")
"""Files every build has (checked for builds cached before hashes were recorded, as well)."""
_HASH_CHUNK = 1 << 20


class WarmStartCacheError(RuntimeError):
    """The warm-start cache cannot provide the build: it lacks a usable one and cannot be written to."""


@dataclass
class TinyBuildResult:
    """A built (or cached) warm start: ``path`` loads with ``AutoModelForCausalLM``/``AutoTokenizer``."""

    path: Path
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def cached(self) -> bool:
        return bool(self.metrics.get("cached", False))

    @property
    def model_hash(self) -> str:
        """SHA-256 (hex) of the build's ``model.safetensors``, as recorded in (and verified against) metrics.json."""
        return str(self.metrics[FILES_KEY][MODEL_FILE]["sha256"])

    @property
    def band(self) -> BandVerdict:
        """Whether the held-out greedy accuracy lies in the presets' band (:func:`warm_start_band_check`)."""
        acc = self.metrics.get("greedy_acc")
        return warm_start_band_check(str(self.metrics.get("preset")), int(self.metrics.get("seed", -1)),
                                     float("nan") if acc is None else float(acc))


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


def _read_metrics(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(metrics, None), or (None, why not): a missing folder gives (None, None)."""
    try:
        metrics = json.loads((folder / METRICS_FILE).read_text())
    except FileNotFoundError:
        return None, (f"{METRICS_FILE}: missing" if folder.exists() else None)
    except (OSError, ValueError) as error:  # ValueError: JSON or UTF-8 decoding
        return None, f"{METRICS_FILE}: unreadable ({error})"
    if not isinstance(metrics, dict):
        return None, f"{METRICS_FILE}: not a JSON object"
    return metrics, None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _file_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file of a build (all but metrics.json and hidden files)."""
    return {path.name: {"bytes": path.stat().st_size, "sha256": _sha256(path)}
            for path in sorted(folder.iterdir())
            if path.is_file() and path.name != METRICS_FILE and not path.name.startswith(".")}


def _hash_problem(folder: Path, files: Any) -> str | None:
    """What is wrong with a build against its recorded files (None: every file has its size and hash)."""
    if not isinstance(files, dict) or not all(isinstance(record, dict) for record in files.values()):
        return f"{METRICS_FILE}: its '{FILES_KEY}' record is malformed"
    for name in REQUIRED_FILES:
        if name not in files:
            return f"{METRICS_FILE}: records no {name}"
    for name, record in files.items():
        path = folder / name
        try:
            size = path.stat().st_size
            if size != record.get("bytes"):
                return f"{name}: {size:,} bytes, {record.get('bytes'):,} expected"
            if _sha256(path) != record.get("sha256"):
                return f"{name}: {size:,} bytes, hash mismatch"
        except FileNotFoundError:
            return f"{name}: missing"
        except (OSError, TypeError, ValueError) as error:
            return f"{name}: unreadable ({error})"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete safetensors file: the header must parse and its tensors' data must fill the
    rest of the file exactly (each tensor's byte range matching its dtype and shape)."""
    sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return f"{size:,} bytes, shorter than a safetensors header"
            header_length = int.from_bytes(head, "little")
            if header_length <= 0 or 8 + header_length > size:
                return f"{size:,} bytes, header length {header_length:,} does not fit"
            header = json.loads(handle.read(header_length))
        end = 0
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            start, stop = entry["data_offsets"]
            if entry["dtype"] in sizes and stop - start != math.prod(entry["shape"]) * sizes[entry["dtype"]]:
                return f"tensor {name} has {stop - start:,} bytes of data, its shape needs more or less"
            end = max(end, stop)
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return f"unreadable safetensors header ({error})"
    if 8 + header_length + end != size:
        return f"{size:,} bytes, its header describes {8 + header_length + end:,}"
    return None


def _legacy_problem(folder: Path) -> str | None:
    """Structural check of a build cached before hashes were recorded (see the module docstring)."""
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            return f"{name}: missing"
    problem = _safetensors_problem(folder / MODEL_FILE)
    if problem is not None:
        return f"{MODEL_FILE}: {problem}"
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_text())
        except (OSError, ValueError) as error:
            return f"{path.name}: unreadable ({error})"
    return None


def _inspect(folder: Path) -> tuple[str, dict[str, Any] | None, str | None]:
    """The state of a cache folder: ``("ok", metrics, None)`` verified by its hashes, ``("legacy", metrics, None)``
    structurally complete but without hashes, ``("missing", None, None)``, or ``("corrupt", metrics or None,
    what is wrong)``."""
    metrics, problem = _read_metrics(folder)
    if metrics is None:
        return ("corrupt", None, problem) if problem is not None else ("missing", None, None)
    if FILES_KEY not in metrics:
        problem = _legacy_problem(folder)
        return ("legacy", metrics, None) if problem is None else ("corrupt", metrics, problem)
    problem = _hash_problem(folder, metrics[FILES_KEY])
    return ("ok", metrics, None) if problem is None else ("corrupt", metrics, problem)


def _write_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    """Replace ``folder/metrics.json`` atomically (a reader sees the old or the new file, whole)."""
    tmp = folder / f".{METRICS_FILE}.tmp"  # one writer at a time: the key's lock is held
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True, allow_nan=False))
    os.replace(tmp, folder / METRICS_FILE)


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
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    # what the cache verifies on every use; metrics.json, written last, marks the folder complete
    metrics[FILES_KEY] = _file_records(folder)
    text = json.dumps(_nan_to_none(metrics), indent=2, sort_keys=True, allow_nan=False)
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


def _say(line: str, emit: EmitFn | None, level: int = logging.WARNING) -> None:
    if emit is not None:
        emit(line)
    else:
        LOG.log(level, line)


def _stale_tmp(root: Path, key: str) -> list[Path]:
    prefix = f".{key}.tmp-"
    return [entry for entry in root.iterdir() if entry.name.startswith(prefix)]


def _remove_stale_tmp_if_idle(root: Path, key: str, emit: EmitFn | None) -> None:
    """Beside a verified build, remove what a killed process left (e.g. between replacing a corrupt build and
    deleting it) when the key's lock is free right now; writes nothing when there is nothing to remove, and gives up
    quietly when the cache is read-only or a builder holds the lock."""
    try:
        if not _stale_tmp(root, key):
            return
        with open(root / f".{key}.lock", "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                _remove_stale_tmp(root, key, emit)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    except OSError:  # BlockingIOError (a builder holds it) or a read-only cache: leave it to the next builder
        pass


def _remove_stale_tmp(root: Path, key: str, emit: EmitFn | None) -> None:
    """Remove the temporary folders of earlier builds of ``key`` (killed ones): the caller holds the key's lock,
    so no live build owns one."""
    stale = _stale_tmp(root, key)
    for entry in stale:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    removed = [entry.name for entry in stale if not os.path.lexists(entry)]
    if removed:
        _say(f"removed {len(removed)} temporary folder(s) of an interrupted build of warm start {key} "
             f"({', '.join(removed)})", emit, logging.INFO)


def _make_tmp(root: Path, key: str) -> Path:
    """A new temporary build folder ``.<key>.tmp-<pid>-<random>`` with the umask's mode (``mkdtemp`` gives 0700)."""
    while True:
        tmp = root / f".{key}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue


def _publish(tmp: Path, final: Path) -> None:
    """Move the finished build ``tmp`` to ``final``, replacing a corrupt one there as a whole (moved aside first: a
    reader in between finds no build and waits on the key's lock, which the caller holds)."""
    file_mode = tmp.stat().st_mode & 0o666  # the umask's mode: readable by others where the umask allows
    for path in tmp.iterdir():
        if path.is_file():
            path.chmod(file_mode)  # safetensors writes its file 0600
    aside = None
    if final.exists() or final.is_symlink():
        aside = final.with_name(f".{final.name}.tmp-replaced-{os.getpid()}-{secrets.token_hex(4)}")
        os.rename(final, aside)  # a stale-tmp name: a kill before the rmtree leaves nothing the next build keeps
    os.replace(tmp, final)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _read_only_error(root: Path, key: str, problem: str | None, error: OSError) -> WarmStartCacheError:
    held = f"holds a corrupt build of warm start {key} ({problem})" if problem else f"lacks warm start {key}"
    return WarmStartCacheError(
        f"warm-start cache {root} {held} and cannot be written to "
        f"({error.strerror or error}); set LGRPO_CACHE_DIR (or tracking.cache_dir) to a writable folder, "
        f"where it will be built")


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
    use_shipped: bool = True,
) -> TinyBuildResult:
    """Return the warm-started tiny model for ``(preset, seed, sft_steps)``: shipped, cached, or built now.

    A base shipped inside the package (:data:`SHIPPED_DIR`, module docstring *Shipped bases*) is used first when
    its key matches and it verifies (``use_shipped=False`` skips it: the build path's own tests); the result's
    ``metrics["source"]`` says which (``shipped``, ``cache`` or ``built``).

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
    ``sft_cpu_seconds``, ``files`` (size and SHA-256 of every file) and ``cached`` (True when this call built
    nothing); ``band`` is its verdict and ``model_hash`` model.safetensors' SHA-256.
    Safe when several processes build the same key at once: one builds, the others wait on a file lock
    and reuse it.

    A cached build is verified against its recorded hashes before use (module docstring, *Verification*); a
    corrupt one is rebuilt, with one line through ``emit`` (or the logger) naming the file and what is wrong.
    A verified build is used without writing to the cache (it may be read-only); a missing or corrupt build
    in a cache that cannot be written raises :class:`WarmStartCacheError`.

    ``eval_problems`` (greedy) and ``sampled_prompts`` (× 8 samples at T = 1) size the held-out evaluation
    stored in ``metrics``; non-default sizes (for quick tests) get their own cache key.
    """
    spec = get_preset(preset)
    steps = spec.sft_steps if sft_steps is None else int(sft_steps)
    if steps < 1:
        raise ValueError(f"sft_steps must be >= 1, got {steps}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not 1 <= eval_problems <= ARITH_N_TEST or not 1 <= sampled_prompts <= ARITH_N_TEST:
        raise ValueError(f"eval_problems and sampled_prompts must be in 1..{ARITH_N_TEST}")
    key = _cache_key(spec, seed, steps, eval_problems, sampled_prompts)
    final = root / key
    if use_shipped:
        shipped = _shipped_result(key, emit)
        if shipped is not None:
            return shipped

    # A complete build is only ever replaced as a whole (os.replace): reading and verifying it needs no lock and
    # writes nothing, so a read-only cache serves its verified builds.
    state, metrics, problem = _inspect(final)
    if state == "ok":
        _remove_stale_tmp_if_idle(root, key, emit)
        return _cached_result(final, metrics, emit)
    try:
        if not root.is_dir():
            root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f".{key}.lock", "a+")
    except OSError as error:
        if state == "legacy":  # structurally complete, the cache read-only: use it, its hashes stay unrecorded
            LOG.info("warm start %s predates recorded hashes; %s is read-only, so they are not recorded", key, root)
            return _cached_result(final, {**metrics, FILES_KEY: _file_records(final)}, emit)
        raise _read_only_error(root, key, problem, error) from None
    # only now, with no verified build at hand: a shipped or cached base is used silently (every run of a grid
    # passes here, and "preparing" lines from runs that wait for nothing read as work being redone)
    _say(f"preparing warm start {spec.name} (seed {seed}): building it, or waiting for the process that builds it",
         emit, logging.INFO)
    with lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            state, metrics, problem = _inspect(final)  # another process may have built or healed it meanwhile
            _remove_stale_tmp(root, key, emit)
            if state == "ok":
                return _cached_result(final, metrics, emit)
            if state == "legacy":
                metrics = {**metrics, FILES_KEY: _file_records(final)}
                try:
                    _write_metrics(final, metrics)
                except OSError as error:  # the build folder alone is read-only: use it all the same
                    LOG.info("could not record the hashes of warm start %s (%s)", key, error)
                return _cached_result(final, metrics, emit)
            if state == "corrupt":
                _say(f"cached warm start {key} is corrupt ({problem}); rebuilding", emit)
            tmp = _make_tmp(root, key)
            try:
                built = _build_into(tmp, spec, seed, steps, progress, eval_problems, sampled_prompts)
                _publish(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            result = TinyBuildResult(path=final, metrics={**built, "cached": False, "source": "built"})
            _report(result, emit)
            return result
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _shipped_result(key: str, emit: EmitFn | None) -> TinyBuildResult | None:
    """The shipped base of ``key`` when the package holds one that verifies; None otherwise (a shipped base that
    fails its hashes is reported in one line and left alone: the cache or a build serves instead)."""
    folder = SHIPPED_DIR / key
    if not folder.is_dir():
        return None
    state, metrics, problem = _inspect(folder)
    if state != "ok":
        _say(f"shipped warm start {key} fails verification ({problem or 'no recorded hashes'}); "
             f"using the cache instead", emit)
        return None
    return _cached_result(folder, metrics, emit, source="shipped")


def shipped_keys() -> list[str]:
    """Cache keys of the bases shipped in the package (verified or not), sorted."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if p.is_dir() and not p.name.startswith("."))


def _cached_result(final: Path, metrics: dict[str, Any], emit: EmitFn | None, *, source: str = "cache") -> TinyBuildResult:
    result = TinyBuildResult(path=final, metrics={**metrics, "cached": True, "source": source})
    _report(result, emit)
    return result

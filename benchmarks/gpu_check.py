"""GPU readiness check: everything in lgrpo-bench that needs CUDA, on one GPU, offline, in under 9 minutes (540 s budget).

    python benchmarks/gpu_check.py [--cache-dir DIR] [--warm-start-steps 300] [--steps 2] [--eval-limit 200]
                                   [--budget-s 540] [--keep]

Prints one line per check — ``OK``, ``SKIP`` (with the reason) or ``FAIL`` (with the error) — and its figure:

=====================  ==============================================================================================
env                    torch, CUDA, vLLM versions; the device and its memory
tiny-model             tiny-s built locally (its warm start runs on the CPU; no hub): seconds, parameters, accuracy
train-bf16[<name>]     ``--steps`` RL steps of every registered algorithm (``lgrpo_bench.algorithms.ALGORITHMS``,
                       so new presets are checked too) through ``train()`` with bf16 on the GPU: median s/step,
                       peak GPU memory, final loss (must be finite)
eval-hf[arith]         ``lgrpo-bench eval --backend hf`` on ``--eval-limit`` arith problems: accuracy, seconds
gpu-packing            the local executor packing 2 runs on one GPU (``gpus_per_run: 1, share_gpus: true,
                       runs_per_gpu: 2``): both done, seconds they trained at the same time, wall time
vllm-rollouts          ``--steps`` RL steps with ``train.use_vllm`` (TRL colocate mode): median s/step
eval-vllm[arith]       ``lgrpo-bench eval --backend vllm`` on the same problems: accuracy, seconds, and the
                       difference to the HF backend (greedy decoding: expected within a few points)
eval-protocol          the paper grid's protocol (``experiments/paper_qwen25.yaml``: AIME24 avg@32 at T 0.6, top-p
                       0.95; MATH-500 greedy) through ``lgrpo-bench eval --backend vllm`` on ``--protocol-limit``
                       problems (64 new tokens), three times: eval seed 0, 0 again, 1. The logged identity says
                       avg@32 / greedy with the stated T and top-p; arith sampled at AIME24's protocol (tiny-s answers
                       nothing on AIME prompts): a problem's 32 samples are not all one answer, seed 0 repeats its
                       records exactly and seed 1 gives other ones
vllm-seeds             the trainer's vLLM path (TRL colocate, ``UnifiedLossGRPOTrainer``) with the real engine: the
                       engine was built with ``engine_seed(train.seed, 0)`` (not TRL's process index), a group of G
                       copies of a prompt gives G different completions (one seed per row), the same training seed
                       repeats the rollouts exactly, another seed changes them; and one request with ``n = G`` and a
                       seed (server mode) gives G different completions, again the same when repeated
=====================  ==============================================================================================

On any machine, before the CUDA boundary: ``seed-derivation`` (the engine and request seeds of two training
seeds, two processes and two steps all differ, and repeat) and ``paper-protocol`` (the paper grid loads, and each
benchmark's resolved protocol is printed: sampled ones at an anchor T / top-p with ≥ 10 samples, the rest greedy).

Offline: ``HF_HUB_OFFLINE`` and friends are set before anything is imported, tiny-s is built from the package's
own tokenizer and recipe. Everything is written to a temporary folder (an SQLite store, run folders) that is
removed at the end unless ``--keep``; the tiny-model cache is ``--cache-dir`` (default: the usual cache, so a
second run skips the warm start).

Without CUDA the script runs up to the CUDA boundary — the model build, every run config and the packing grid
are built and validated, the seed derivation and the paper protocol checked — and prints ``SKIP`` for each check
that needs the GPU, saying why (no CUDA device, or vLLM not installed). Exit code: 0 when no check failed and the whole run stayed within ``--budget-s``;
1 otherwise.
"""

from __future__ import annotations

import os

for _key, _value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                     "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_NO_USAGE_STATS": "1",
                     "DO_NOT_TRACK": "1"}.items():
    os.environ.setdefault(_key, _value)

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

EXPERIMENT = "gpu-check"
BUDGET_S = 540.0
PAPER_GRID = Path(__file__).resolve().parent.parent / "experiments" / "paper_qwen25.yaml"
#: Evaluation temperature / top-p pairs of the field's anchors (open-r1 / lighteval; SimpleRL-Zoo).
ANCHORS = {(0.6, 0.95): "open-r1", (1.0, 0.95): "SimpleRL-Zoo"}
MIN_EVAL_SAMPLES = 10
GIB = 1024**3


@dataclass
class Outcome:
    name: str
    status: str  # OK, SKIP, FAIL
    text: str
    seconds: float = 0.0


class Checks:
    """Runs checks in order, prints one line each, and remembers the outcomes."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def record(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        timing = f"  [{outcome.seconds:.1f} s]" if outcome.status == "OK" else ""
        print(f"{outcome.status:<5} {outcome.name:<24} {outcome.text}{timing}", flush=True)
        return outcome

    def skip(self, name: str, reason: str) -> Outcome:
        return self.record(Outcome(name, "SKIP", reason))

    def run(self, name: str, body: Callable[[], str], *, skip_reason: str | None = None) -> Outcome:
        """``body()`` returns the figure; an exception is a FAIL with its last line (traceback to stderr)."""
        if skip_reason:
            return self.skip(name, skip_reason)
        started = time.perf_counter()
        try:
            figure = body()
        except Exception as error:  # noqa: BLE001 - one failed check must not stop the others
            traceback.print_exc(file=sys.stderr)
            text = f"{type(error).__name__}: {error}".strip().splitlines()
            return self.record(Outcome(name, "FAIL", text[-1][:400] if text else type(error).__name__,
                                       time.perf_counter() - started))
        return self.record(Outcome(name, "OK", figure, time.perf_counter() - started))


# ---------------------------------------------------------------------------------------------------------
# Configurations (built and validated on any machine: the part before the CUDA boundary)
# ---------------------------------------------------------------------------------------------------------
def run_config_data(work: Path, args, *, algorithm: str, seed: int = 0, use_vllm: bool = False) -> dict:
    return {
        "model": {"name": "tiny-s", "warm_start_steps": args.warm_start_steps},
        "task": {"name": "arith", "num_train_problems": 512, "num_heldout_problems": 64},
        "algorithm": {"name": algorithm},
        "train": {"seed": seed, "max_steps": args.steps, "num_generations": 8, "prompts_per_step": 8,
                  "max_completion_length": 40, "bf16": True, "use_vllm": use_vllm, "heldout_every": 0,
                  "save_every": 0, "samples_every": 0},
        "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}", "experiment": EXPERIMENT, "runs_dir": str(work / "runs"),
                     "cache_dir": str(args.cache_dir)},
    }


def validated(data: dict):
    from lgrpo_bench.runs.resolve import build_run

    return build_run(data, "gpu_check")


def packing_grid(work: Path, args) -> Path:
    """Two bf16 runs of tiny-s on one GPU at once (local executor)."""
    base = run_config_data(work, args, algorithm="lambda_grpo")
    data = {"name": "gpu-packing", "base": base, "axes": {"train.seed": [0, 1]},
            "executor": {"kind": "local", "slots": 2, "gpus_per_run": 1, "share_gpus": True, "runs_per_gpu": 2,
                         "gpus": [0]}}
    path = work / "gpu-packing.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    from lgrpo_bench.runs.resolve import load_grid

    load_grid(path)  # validated before the boundary
    return path


# ---------------------------------------------------------------------------------------------------------
# Helpers on the GPU side
# ---------------------------------------------------------------------------------------------------------
def cli(*argv: str, cwd: Path, timeout_s: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "lgrpo_bench.cli", *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout_s, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise RuntimeError(f"lgrpo-bench {' '.join(argv[:2])} exited {done.returncode}: " + " | ".join(tail))
    return done


def step_seconds(uri: str, mlflow_run_id: str) -> float:
    from lgrpo_bench.tracking import open_client

    history = open_client(uri).get_metric_history(mlflow_run_id, "train/step_s")
    if not history:
        raise RuntimeError("no train/step_s logged")
    return statistics.median(m.value for m in history)


def train_in_process(config) -> str:
    import torch

    from lgrpo_bench.runs.resolve import prepare_run
    from lgrpo_bench.training.run import train

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    prepared = prepare_run(config)
    result = train(prepared.config, prepared.run_id)
    peak = torch.cuda.max_memory_allocated() / GIB
    loss = result.metrics.get("train/loss", float("nan"))
    if not math.isfinite(loss):
        raise RuntimeError(f"final train/loss is {loss}")
    return (f"{step_seconds(config.tracking.uri, result.mlflow_run_id):.2f} s/step (median of {config.train.max_steps}), "
            f"peak {peak:.2f} GiB, final loss {loss:.4f}")


def evaluate_cli(model_dir: str, backend: str, work: Path, limit: int) -> tuple[float, float]:
    started = time.perf_counter()
    done = cli("eval", "--model", model_dir, "--benchmarks", "arith", "--backend", backend, "--limit", str(limit),
               "--json", "--no-log", cwd=work)
    metrics = json.loads(done.stdout[done.stdout.index("{"):])
    return float(metrics["arith"]["acc"]), time.perf_counter() - started


def packing(grid: Path, work: Path) -> str:
    from lgrpo_bench.tracking import open_client

    started = time.perf_counter()
    cli("run", str(grid), cwd=work)
    wall = time.perf_counter() - started
    client = open_client(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    runs = client.search_runs([experiment], "tags.`lgrpo.grid` = 'gpu-packing' AND tags.`lgrpo.kind` = 'train'")
    if len(runs) != 2 or any(run.data.tags.get("lgrpo.state") != "done" for run in runs):
        raise RuntimeError(f"expected 2 done runs, found {[(r.data.tags.get('lgrpo.run_id'), r.data.tags.get('lgrpo.state')) for r in runs]}")
    (a_start, a_end), (b_start, b_end) = [(run.info.start_time / 1000, run.info.end_time / 1000) for run in runs]
    together = max(0.0, min(a_end, b_end) - max(a_start, b_start))
    if together <= 0:
        raise RuntimeError("the two runs did not train at the same time")
    return f"2 runs done on GPU 0, trained together for {together:.1f} s, wall {wall:.1f} s"


# ---------------------------------------------------------------------------------------------------------
# Seeds and the evaluation protocol (issue 27): what runs on any machine, then the GPU side
# ---------------------------------------------------------------------------------------------------------
def seed_derivation() -> str:
    """The engine and request seeds the trainer derives: two training seeds, two processes, two steps all differ."""
    from lgrpo_bench.training.seeding import engine_seed, request_seed

    engines = {(seed, rank): engine_seed(seed, rank) for seed in (7, 8) for rank in (0, 1)}
    requests = {(seed, rank, step): request_seed(seed, rank, step) for seed in (7, 8) for rank in (0, 1) for step in (0, 1)}
    if len(set(engines.values())) != len(engines) or len(set(requests.values())) != len(requests):
        raise RuntimeError(f"seed collision: engines {engines}, requests {requests}")
    if engine_seed(7, 0) != engine_seed(7, 0) or request_seed(7, 0, 1) != request_seed(7, 0, 1):
        raise RuntimeError("a seed does not repeat")
    return (f"engine seeds (train seed 7, 8 × rank 0, 1) {sorted(engines.values())[:2]}…, 8 request seeds, "
            "all distinct and repeatable")


def paper_protocol(protocol: dict) -> str:
    """The paper grid's evaluation section (kept in ``protocol``) and each benchmark's resolved protocol."""
    from lgrpo_bench.evaluation.protocol import resolve_settings
    from lgrpo_bench.runs.resolve import load_grid

    eval_config = load_grid(PAPER_GRID).points[0].config.eval
    protocol["eval"] = eval_config
    parts, wrong = [], []
    for name in eval_config.benchmarks:
        settings = resolve_settings(name, eval_config)
        if settings.temperature == 0:
            parts.append(f"{name} greedy")
            continue
        parts.append(f"{name} avg@{settings.k} T {settings.temperature:g} top-p {settings.top_p:g}")
        if (settings.temperature, settings.top_p) not in ANCHORS or settings.k < MIN_EVAL_SAMPLES:
            wrong.append(name)
    if wrong:
        raise RuntimeError(f"{', '.join(wrong)}: not an anchor protocol with ≥ {MIN_EVAL_SAMPLES} samples: {'; '.join(parts)}")
    return "; ".join(parts)


def _eval_records(uri: str, experiment: str, benchmark: str, folder: Path) -> tuple[dict[str, str], list[dict]]:
    """The identity tags and per-sample records an evaluation logged for ``benchmark`` into ``experiment``."""
    from lgrpo_bench.tracking import open_client
    from lgrpo_bench.tracking import schema as t

    client = open_client(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    run = next(r for r in runs if t.eval_tag(benchmark, "protocol") in r.data.tags)
    identity = {f: run.data.tags.get(t.eval_tag(benchmark, f), "") for f in ("protocol", "k", "temperature", "top_p")}
    local = client.download_artifacts(run.info.run_id, f"{t.eval_records_artifact_dir(benchmark)}/{t.EVAL_RECORDS_FILENAME}",
                                      str(folder))
    records = [json.loads(line) for line in Path(local).read_text(encoding="utf-8").splitlines() if line.strip()]
    return identity, records


def eval_protocol(model_dir: str, eval_config, work: Path, limit: int, backend: str = "vllm") -> str:
    """``lgrpo-bench eval --backend <backend>`` with the paper grid's protocol for eval seeds 0, 0, 1 (the GPU runs it
    on vLLM; tests/test_gpu_check.py on the HF backend): AIME24 and MATH-500 logged with the protocol the grid states
    (avg@k at its T / top-p; greedy); and, since tiny-s answers nothing on AIME prompts (its context is 256 tokens),
    arith sampled with AIME24's k / T / top-p: a problem's k samples differ, seed 0 repeats its records exactly,
    seed 1 does not."""
    sampled, greedy, probe = "aime24", "math500", "arith"
    stated = eval_config.overrides[sampled]
    sets = [f"eval.overrides.{sampled}.max_tokens=64", f"eval.overrides.{greedy}.max_tokens=64"]
    for name in (sampled, probe):
        sets += [f"eval.overrides.{name}.k={stated.k}", f"eval.overrides.{name}.temperature={stated.temperature}",
                 f"eval.overrides.{name}.top_p={stated.top_p}"]
    sets += [f"eval.overrides.{greedy}.k=1", f"eval.overrides.{greedy}.temperature=0"]
    found = {}
    for label, seed in (("a", 0), ("b", 0), ("c", 1)):
        uri, experiment = f"sqlite:///{work / f'protocol-{label}.db'}", f"protocol-{label}"
        argv = ["eval", "--model", model_dir, "--benchmarks", f"{sampled},{greedy},{probe}", "--backend", backend,
                "--limit", str(limit), "--tracking-uri", uri, "--experiment", experiment, "--set", f"eval.seed={seed}"]
        for item in sets:
            argv += ["--set", item]
        cli(*argv, cwd=work)
        found[label] = {name: _eval_records(uri, experiment, name, work / f"records-{label}-{name}")
                        for name in (sampled, greedy, probe)}
    want = {"protocol": f"avg@{stated.k}", "k": str(stated.k), "temperature": f"{stated.temperature:g}",
            "top_p": f"{stated.top_p:g}"}
    for name in (sampled, probe):
        identity = found["a"][name][0]
        if {key: identity[key] for key in want} != want:
            raise RuntimeError(f"{name}: logged identity {identity}, the grid states {want}")
    if found["a"][greedy][0]["protocol"] != "greedy":
        raise RuntimeError(f"{greedy}: logged protocol {found['a'][greedy][0]['protocol']!r}, not greedy")
    by_problem: dict[str, list] = {}
    for record in found["a"][probe][1]:
        by_problem.setdefault(record["problem_id"], []).append(record["completion"])
    if any(len(samples) != stated.k for samples in by_problem.values()):
        raise RuntimeError(f"{probe}: samples per problem {[len(v) for v in by_problem.values()]}, not {stated.k}")
    if all(len(set(samples)) == 1 for samples in by_problem.values()):
        raise RuntimeError(f"{probe}: every problem's {stated.k} samples are one completion (not sampled apart)")
    completions = {label: [r["completion"] for r in found[label][probe][1]] for label in found}
    if completions["a"] != completions["b"]:
        raise RuntimeError(f"{probe}: eval seed 0 twice gave different samples")
    if completions["a"] == completions["c"]:
        raise RuntimeError(f"{probe}: eval seeds 0 and 1 gave the same samples")
    distinct = sum(len(set(v)) for v in by_problem.values()) / len(by_problem)
    return (f"{sampled} avg@{stated.k} T {stated.temperature:g} top-p {stated.top_p:g} and {greedy} greedy logged as "
            f"stated; {probe} at that protocol: {distinct:.1f} distinct completions per problem of {stated.k}, "
            "seed 0 repeats exactly, seed 1 differs")


def vllm_seeds(config, model_dir: str, work: Path) -> str:
    """The trainer's colocated vLLM path with the real engine (see the module docstring, ``vllm-seeds``)."""
    from vllm import SamplingParams

    from lgrpo_bench.algorithms.presets import algorithm_of
    from lgrpo_bench.models.loading import load_model_and_tokenizer
    from lgrpo_bench.training.arguments import grpo_config
    from lgrpo_bench.training.data import build_task_data
    from lgrpo_bench.training.run import make_reward_funcs_for
    from lgrpo_bench.training.seeding import PerRowSeededLLM, engine_seed, request_seed
    from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer

    seed, group = config.train.seed, config.train.num_generations
    model, tokenizer = load_model_and_tokenizer(model_dir)
    algorithm = algorithm_of(config)
    reward_funcs, weights = make_reward_funcs_for(config, algorithm)
    args = grpo_config(config, work / "vllm-seeds", algorithm=algorithm)
    args.reward_weights = weights
    data = build_task_data(config, tokenizer)
    trainer = UnifiedLossGRPOTrainer(model=model, reward_funcs=reward_funcs, args=args, train_dataset=data.train,
                                     processing_class=tokenizer, algorithm=algorithm)
    generation = trainer.vllm_generation
    if not isinstance(generation.llm, PerRowSeededLLM):
        raise RuntimeError(f"the trainer's engine is {type(generation.llm).__name__}, not seeded per row")
    engine = generation.llm.engine
    model_config = getattr(engine.llm_engine, "model_config", None) or engine.llm_engine.vllm_config.model_config
    if model_config.seed != engine_seed(seed, 0):
        raise RuntimeError(f"vLLM engine seed {model_config.seed}, expected engine_seed({seed}, 0) = {engine_seed(seed, 0)}")
    prompt_ids = tokenizer(data.train[0]["prompt"], add_special_tokens=False)["input_ids"]

    def rollouts(training_seed: int) -> list[tuple[int, ...]]:
        trainer.args.seed = training_seed
        trainer._seed_next_generation("train")
        _, completion_ids, _, _ = generation.generate(prompts=[prompt_ids] * group, images=None, num_generations=group)
        return [tuple(ids) for ids in completion_ids]

    first, again, other = rollouts(seed), rollouts(seed), rollouts(seed + 1)
    trainer.args.seed = seed
    if len(set(first)) < 2:
        raise RuntimeError(f"the {group} rows of one prompt gave one completion")
    if first != again:
        raise RuntimeError("the same training seed gave other rollouts")
    if first == other:
        raise RuntimeError(f"training seeds {seed} and {seed + 1} gave the same rollouts")
    params = SamplingParams(n=group, seed=request_seed(seed, 0, 0), temperature=config.train.temperature,
                            max_tokens=config.train.max_completion_length)
    children = [[tuple(o.token_ids) for o in engine.generate([{"prompt_token_ids": prompt_ids}], params,
                                                             use_tqdm=False)[0].outputs] for _ in range(2)]
    if len(set(children[0])) < 2 or children[0] != children[1]:
        raise RuntimeError(f"server-mode sampling (n={group}, one seed): {len(set(children[0]))} distinct children, "
                           f"repeat {'equal' if children[0] == children[1] else 'different'}")
    return (f"engine seed {model_config.seed} = engine_seed({seed}, 0); {len(set(first))} distinct completions of "
            f"{group} rows; seed {seed} repeats, seed {seed + 1} differs; n={group} with one seed: "
            f"{len(set(children[0]))} distinct, repeats")


# ---------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None):
    from lgrpo_bench.models.tiny import default_cache_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="tiny-model cache")
    parser.add_argument("--warm-start-steps", type=int, default=300, help="SFT steps of tiny-s's warm start (CPU)")
    parser.add_argument("--steps", type=int, default=2, help="RL steps of each training check")
    parser.add_argument("--eval-limit", type=int, default=200, help="arith problems of each evaluation check")
    parser.add_argument("--protocol-limit", type=int, default=3, help="AIME24 / MATH-500 problems of eval-protocol")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="whole-run budget in seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (store, run folders)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    import torch

    from lgrpo_bench.algorithms import ALGORITHMS

    checks = Checks()
    work = Path(tempfile.mkdtemp(prefix="lgrpo-gpu-check-"))
    cuda = torch.cuda.is_available()
    has_vllm = importlib.util.find_spec("vllm") is not None
    no_cuda = (f"no CUDA device (torch.cuda.is_available() is False; torch {torch.__version__}, "
               f"built for CUDA {torch.version.cuda or 'none'})")
    no_vllm = "vLLM is not installed (pip install 'lgrpo-bench[vllm]')"
    vllm_skip = no_cuda if not cuda else None if has_vllm else no_vllm
    try:
        if cuda:
            props = torch.cuda.get_device_properties(0)
            device = f"{torch.cuda.get_device_name(0)}, {props.total_memory / GIB:.0f} GiB, {torch.cuda.device_count()} visible"
        else:
            device = "none"
        vllm_version = "not installed"
        if has_vllm:
            from importlib.metadata import version

            vllm_version = version("vllm")
        checks.record(Outcome("env", "OK", f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}), "
                                           f"vLLM {vllm_version}, device: {device}"))

        # before the boundary: the model, every run config, the packing grid
        built: dict[str, str] = {}

        def tiny_model() -> str:
            from lgrpo_bench.models.tiny import build_tiny

            build = build_tiny("tiny-s", cache_dir=args.cache_dir, seed=0, sft_steps=args.warm_start_steps)
            built["path"] = str(build.path)
            m = build.metrics
            how = "cached" if m.get("cached") else f"built in {m.get('sft_seconds', 0):.0f} s"
            return (f"tiny-s {int(m['n_params']):,} parameters, warm start {args.warm_start_steps} steps ({how}), "
                    f"greedy accuracy {m['greedy_acc']:.3f}")

        checks.run("tiny-model", tiny_model)
        configs = {name: validated(run_config_data(work, args, algorithm=name)) for name in ALGORITHMS}
        vllm_config = validated(run_config_data(work, args, algorithm="lambda_grpo", seed=7, use_vllm=True))
        grid = packing_grid(work, args)
        protocol: dict = {}
        checks.run("seed-derivation", seed_derivation)
        checks.run("paper-protocol", lambda: paper_protocol(protocol))
        model_ready = "path" in built
        no_model = None if model_ready else "tiny-s could not be built (see tiny-model)"

        # the CUDA boundary
        for name, config in configs.items():
            checks.run(f"train-bf16[{name}]", lambda config=config: train_in_process(config),
                       skip_reason=no_cuda if not cuda else no_model)
        hf: dict[str, float] = {}

        def eval_hf() -> str:
            hf["acc"], seconds = evaluate_cli(built["path"], "hf", work, args.eval_limit)
            return f"accuracy {hf['acc']:.3f} on {args.eval_limit} arith problems in {seconds:.1f} s"

        checks.run("eval-hf[arith]", eval_hf, skip_reason=no_cuda if not cuda else no_model)
        checks.run("gpu-packing", lambda: packing(grid, work), skip_reason=no_cuda if not cuda else no_model)

        def vllm_rollouts() -> str:
            path = work / "vllm-run.yaml"
            path.write_text(yaml.safe_dump(vllm_config.model_dump(mode="json"), sort_keys=False))
            cli("train", str(path), cwd=work)
            from lgrpo_bench.runs.resolve import run_id
            from lgrpo_bench.tracking.reader import find_train_run, open_reader

            with open_reader(vllm_config.tracking.uri) as reader:
                run = find_train_run(reader, EXPERIMENT, run_id(vllm_config))
            return f"{step_seconds(vllm_config.tracking.uri, run.info.run_id):.2f} s/step with vLLM colocate rollouts"

        checks.run("vllm-rollouts", vllm_rollouts, skip_reason=vllm_skip or no_model)

        def eval_vllm() -> str:
            acc, seconds = evaluate_cli(built["path"], "vllm", work, args.eval_limit)
            versus = f", {100 * (acc - hf['acc']):+.1f} points vs hf" if "acc" in hf else ""
            return f"accuracy {acc:.3f} on {args.eval_limit} arith problems in {seconds:.1f} s{versus}"

        checks.run("eval-vllm[arith]", eval_vllm, skip_reason=vllm_skip or no_model)
        no_protocol = None if "eval" in protocol else "the paper grid's protocol did not load (see paper-protocol)"
        checks.run("eval-protocol", lambda: eval_protocol(built["path"], protocol["eval"], work, args.protocol_limit),
                   skip_reason=vllm_skip or no_model or no_protocol)
        # last: the engine stays in this process (TRL's colocated vLLM is not torn down)
        checks.run("vllm-seeds", lambda: vllm_seeds(vllm_config, built["path"], work), skip_reason=vllm_skip or no_model)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    total = time.perf_counter() - started
    counts = {status: sum(1 for o in checks.outcomes if o.status == status) for status in ("OK", "SKIP", "FAIL")}
    over = total > args.budget_s
    print(f"gpu_check: {counts['OK']} ok, {counts['SKIP']} skipped, {counts['FAIL']} failed in {total:.0f} s "
          f"(budget {args.budget_s:.0f} s{', EXCEEDED' if over else ''})", flush=True)
    return 1 if counts["FAIL"] or over else 0


if __name__ == "__main__":
    sys.exit(main())

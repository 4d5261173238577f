"""Platform overhead of ``lgrpo-bench train`` over a bare TRL script on the same configuration.

Both sides: the same cached warm-started tiny model, the same arith prompts and reward, 40 steps, G = 8,
8 prompts per step, 40-token completions, loss ``dapo`` (TRL's built-in vs our unified loss), no
checkpoints, final model saved, one torch thread on both sides (``train`` uses one for models under 20M
parameters). Ours adds MLflow (run, params, batched step metrics, artifacts), the unified loss, callbacks
and the run folder. Runs alternate in one process, the order flipping every repeat (bare, ours, ours,
bare, ...) so that drift in machine load hits both sides; the median of the per-pair ratios is printed
(target ≤ 1.05). Held-out accuracy is a measurement, not overhead:
its cost is printed separately (``heldout_every=10``).

    python benchmarks/train_overhead.py [--repeats 5] [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from lgrpo_bench.runs.resolve import build_run as build_run_config  # noqa: E402
from lgrpo_bench.models.loading import resolve_model  # noqa: E402
from lgrpo_bench.tasks.rewards import make_reward_funcs  # noqa: E402
from lgrpo_bench.tracking import open_client  # noqa: E402
from lgrpo_bench.training.data import build_task_data  # noqa: E402
from lgrpo_bench.runs.resolve import prepare_run  # noqa: E402
from lgrpo_bench.training.run import train as train_run  # noqa: E402


def train(config):
    """Train one run as the lifecycle does (resolved config, run id computed once)."""
    prepared = prepare_run(config)
    return train_run(prepared.config, prepared.run_id)


def run_config(work: Path, steps: int, heldout_every: int, tag: str):
    return build_run_config({
        "model": {"name": "tiny-s"},
        "algorithm": {"name": "dapo"},
        "train": {"max_steps": steps, "save_every": 0, "samples_every": 0, "heldout_every": heldout_every, "seed": 0},
        "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}", "experiment": f"overhead-{tag}", "runs_dir": str(work / "runs")},
    })


def bare_trl(model_path: str, config, out: Path) -> float:
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    data = build_task_data(config, tokenizer)
    t = config.train
    args = GRPOConfig(output_dir=str(out), max_steps=t.max_steps, learning_rate=t.learning_rate, lr_scheduler_type="constant",
                      per_device_train_batch_size=t.prompts_per_step * t.num_generations, num_generations=t.num_generations,
                      max_completion_length=t.max_completion_length, temperature=1.0, top_k=0, top_p=1.0, beta=0.0,
                      loss_type="dapo", bf16=False, use_cpu=True, activation_checkpointing=False, logging_steps=1,
                      save_strategy="no", report_to="none", disable_tqdm=True, seed=t.seed, weight_decay=0.0)
    trainer = GRPOTrainer(model=model, reward_funcs=[w.func for w in make_reward_funcs("arith")], args=args,
                          train_dataset=data.train, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(out / "final"))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    options = parser.parse_args()
    model_path = resolve_model("tiny-s").name_or_path  # builds or reuses the cached warm start
    torch.set_num_threads(1)
    bare_times, ours_times, heldout_times = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # the store's one-time creation (tables, migrations: ~3 s) is paid once per store, not per run
        open_client(f"sqlite:///{work / 'mlflow.db'}")
        for repeat in range(options.repeats):
            torch.manual_seed(repeat)
            for side in (("bare", "ours") if repeat % 2 == 0 else ("ours", "bare")):
                if side == "bare":
                    config = run_config(work, options.steps, 0, "bare")
                    bare_times.append(bare_trl(model_path, config, work / f"bare{repeat}"))
                else:
                    ours_times.append(train(run_config(work, options.steps, 0, f"ours{repeat}")).seconds)
            heldout_times.append(train(run_config(work, options.steps, 10, f"heldout{repeat}")).seconds)
    bare, ours, heldout = (statistics.median(x) for x in (bare_times, ours_times, heldout_times))
    pair_ratio = statistics.median(o / b for o, b in zip(ours_times, bare_times))
    print(f"{options.steps} steps of tiny-s, {options.repeats} alternating repeats (median wall-clock seconds)")
    print(f"bare TRL script          {bare:6.2f} s   {[round(x, 2) for x in bare_times]}")
    print(f"lgrpo-bench train        {ours:6.2f} s   {[round(x, 2) for x in ours_times]}")
    print(f"  + held-out every 10    {heldout:6.2f} s   {[round(x, 2) for x in heldout_times]}")
    print(f"overhead ratio ours/bare = {pair_ratio:.3f} (median of per-pair ratios; target ≤ 1.05); "
          f"ratio of medians {ours / bare:.3f}; held-out measurement adds {heldout - ours:.2f} s")


if __name__ == "__main__":
    main()

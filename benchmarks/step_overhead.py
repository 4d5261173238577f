"""Step-time overhead of λ-GRPO's weighting over DAPO's token mean (the paper claims no extra compute).

Both trainers optimise the same tiny-l policy on the same generation batch (64 completions of ≤ 40 tokens,
uneven lengths); their optimisation steps (forward, loss, backward, AdamW step) are interleaved in one
process so machine noise hits both alike. Prints the median step time of each and their ratio
(target ≤ 1.02). Generation, which dominates a full RL step, is identical for both and left out, so the
ratio is an upper bound on the overhead of a whole step.

    python benchmarks/step_overhead.py [--preset tiny-l] [--repeats 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch
from datasets import Dataset
from trl import GRPOConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lgrpo_bench.algorithms import get_algorithm  # noqa: E402
from lgrpo_bench.models.tiny import make_tiny_model  # noqa: E402
from lgrpo_bench.models.tokenizer import make_tokenizer  # noqa: E402
from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer, row_group_statistics  # noqa: E402

GROUP, N_GROUPS, PROMPT_LEN, MAX_LEN = 8, 8, 12, 40


def generation_batch(vocab: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    rows = GROUP * N_GROUPS
    prompt_ids = torch.randint(3, vocab, (rows, PROMPT_LEN), generator=gen)
    completion_ids = torch.randint(3, vocab, (rows, MAX_LEN), generator=gen)
    lengths = torch.randint(5, MAX_LEN + 1, (rows,), generator=gen)
    mask = (torch.arange(MAX_LEN)[None] < lengths[:, None]).long()
    batch = {"prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids), "completion_ids": completion_ids,
             "completion_mask": mask, "advantages": torch.randn(rows, generator=gen), "num_items_in_batch": mask.sum()}
    batch.update(row_group_statistics(lengths.float(), GROUP))
    return batch


def make_trainer(algorithm: str, preset: str, out: str):
    tokenizer = make_tokenizer()
    model = make_tiny_model(preset, tokenizer, seed=0)
    args = GRPOConfig(output_dir=out, per_device_train_batch_size=GROUP * N_GROUPS, num_generations=GROUP,
                      max_completion_length=MAX_LEN, learning_rate=1e-4, report_to="none", use_cpu=True, bf16=False,
                      activation_checkpointing=False, save_strategy="no", disable_tqdm=True)
    trainer = UnifiedLossGRPOTrainer(model=model, reward_funcs=[lambda completions, **k: [0.0] * len(completions)],
                                     args=args, train_dataset=Dataset.from_list([{"prompt": "x"}] * 8),
                                     processing_class=tokenizer, algorithm=get_algorithm(algorithm), r=1 / 9)
    trainer.current_gradient_accumulation_steps = 1
    trainer.create_optimizer()
    return trainer, model


def one_step(trainer, model, batch) -> float:
    start = time.perf_counter()
    loss = trainer._compute_loss(model, batch)
    loss.backward()
    trainer.optimizer.step()
    trainer.optimizer.zero_grad()
    model.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny-l")
    parser.add_argument("--repeats", type=int, default=60)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        dapo, dapo_model = make_trainer("dapo", options.preset, out)
        lam, lam_model = make_trainer("lambda_grpo", options.preset, out)
        batch = generation_batch(dapo_model.config.vocab_size)
        for _ in range(5):  # warm-up
            one_step(dapo, dapo_model, batch), one_step(lam, lam_model, batch)
        dapo_times, lam_times = [], []
        for repeat in range(options.repeats):
            pair = [(dapo, dapo_model, dapo_times), (lam, lam_model, lam_times)]
            for trainer, model, times in pair if repeat % 2 == 0 else pair[::-1]:
                times.append(one_step(trainer, model, batch))
    n_params = sum(p.numel() for p in dapo_model.parameters())
    dapo_median, lam_median = statistics.median(dapo_times), statistics.median(lam_times)
    print(f"preset {options.preset} ({n_params:,} parameters), {GROUP * N_GROUPS} completions × ≤{MAX_LEN} tokens, "
          f"{options.repeats} interleaved optimisation steps each, torch threads {torch.get_num_threads()}")
    print(f"dapo        median {dapo_median * 1000:.1f} ms/step")
    print(f"lambda_grpo median {lam_median * 1000:.1f} ms/step")
    print(f"ratio lambda_grpo/dapo = {lam_median / dapo_median:.3f} (target ≤ 1.02)")


if __name__ == "__main__":
    main()

"""Step-time overhead of λ-GRPO's weighting over DAPO's token mean (the paper claims no extra compute), and of each
surrogate over the clipped one.

Every trainer optimises the same tiny-l policy on the same generation batch (64 completions of ≤ 40 tokens, uneven
lengths, an old policy that differs from the current one, so ratios are computed and clipped); their optimisation
steps (forward, loss, backward, AdamW step) are interleaved in one process, in an order rotated every repeat, so
machine noise hits all alike. Prints the median step time of each and, as the median over repeats of the ratio of
step times within a repeat, λ-GRPO/DAPO (target ≤ 1.02) and
cispo, sapo, gspo over clip (all with the token-mean aggregation, so only the surrogate differs). Generation, which
dominates a full RL step, is identical for all and left out, so the ratios are upper bounds for a whole step.

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

from lgrpo_bench.algorithms.presets import preset_algorithm  # noqa: E402
from lgrpo_bench.models.tiny import make_tiny_model  # noqa: E402
from lgrpo_bench.models.tokenizer import make_tokenizer  # noqa: E402
from lgrpo_bench.training.trainer import UnifiedLossGRPOTrainer, row_group_statistics  # noqa: E402

GROUP, N_GROUPS, PROMPT_LEN, MAX_LEN = 8, 8, 12, 40


def generation_batch(model, seed: int = 0) -> dict:
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(seed)
    rows = GROUP * N_GROUPS
    prompt_ids = torch.randint(3, vocab, (rows, PROMPT_LEN), generator=gen)
    completion_ids = torch.randint(3, vocab, (rows, MAX_LEN), generator=gen)
    lengths = torch.randint(5, MAX_LEN + 1, (rows,), generator=gen)
    mask = (torch.arange(MAX_LEN)[None] < lengths[:, None]).long()
    with torch.no_grad():  # an old policy near the current one: some ratios clip, most do not
        logits = model(input_ids=torch.cat([prompt_ids, completion_ids], 1)).logits[:, PROMPT_LEN - 1 : -1]
        logps = torch.log_softmax(logits, -1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    batch = {"prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids), "completion_ids": completion_ids,
             "completion_mask": mask, "advantages": torch.randn(rows, generator=gen), "num_items_in_batch": mask.sum(),
             "old_per_token_logps": logps + 0.1 * torch.randn(logps.shape, generator=gen)}
    batch.update(row_group_statistics(lengths.float(), GROUP))
    return batch


#: label -> (preset, overrides): the trainers compared (the surrogates all with the token-mean aggregation).
TRAINERS = {
    "dapo": ("dapo", {}),
    "lambda_grpo": ("lambda_grpo", {"r": 1 / 9}),
    "cispo": ("cispo", {}),
    "sapo": ("sapo", {"aggregation": "token_mean"}),
    "gspo": ("gspo", {"aggregation": "token_mean"}),
}


def make_trainer(label: str, preset: str, out: str):
    tokenizer = make_tokenizer()
    model = make_tiny_model(preset, tokenizer, seed=0)
    args = GRPOConfig(output_dir=out, per_device_train_batch_size=GROUP * N_GROUPS, num_generations=GROUP,
                      max_completion_length=MAX_LEN, learning_rate=1e-4, report_to="none", use_cpu=True, bf16=False,
                      activation_checkpointing=False, save_strategy="no", disable_tqdm=True)
    trainer = UnifiedLossGRPOTrainer(model=model, reward_funcs=[lambda completions, **k: [0.0] * len(completions)],
                                     args=args, train_dataset=Dataset.from_list([{"prompt": "x"}] * 8),
                                     processing_class=tokenizer,
                                     algorithm=preset_algorithm(TRAINERS[label][0], num_generations=GROUP,
                                                                max_completion_length=MAX_LEN, **TRAINERS[label][1]))
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
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the figures of docs/measurements.md)")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    with tempfile.TemporaryDirectory() as out:
        trainers = {label: make_trainer(label, options.preset, out) for label in TRAINERS}
        batch = generation_batch(trainers["dapo"][1])
        for _ in range(5):  # warm-up
            for trainer, model in trainers.values():
                one_step(trainer, model, batch)
        times: dict[str, list[float]] = {label: [] for label in TRAINERS}
        labels = list(TRAINERS)
        for repeat in range(options.repeats):
            order = labels[repeat % len(labels):] + labels[: repeat % len(labels)]
            for label in order:
                times[label].append(one_step(*trainers[label], batch))
    n_params = sum(p.numel() for p in trainers["dapo"][1].parameters())
    medians = {label: statistics.median(values) for label, values in times.items()}
    print(f"preset {options.preset} ({n_params:,} parameters), {GROUP * N_GROUPS} completions × ≤{MAX_LEN} tokens, "
          f"{options.repeats} interleaved optimisation steps each, torch threads {torch.get_num_threads()}")
    for label, median in medians.items():
        print(f"{label:12s} median {median * 1000:.1f} ms/step")

    def paired(label: str) -> float:
        """Median over repeats of t(label)/t(dapo) within the same repeat (robust to load drifting between repeats)."""
        return statistics.median(a / b for a, b in zip(times[label], times["dapo"]))

    print(f"ratio lambda_grpo/dapo = {paired('lambda_grpo'):.3f} (median of per-repeat ratios; target ≤ 1.02)")
    for surrogate in ("cispo", "sapo", "gspo"):
        print(f"ratio {surrogate}/clip = {paired(surrogate):.3f} (token_mean aggregation for both)")


if __name__ == "__main__":
    main()

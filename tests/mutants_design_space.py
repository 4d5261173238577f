"""Mutation check for the design-space code (issue 14): plant each plausible one-line bug, run the tests that should
catch it, restore the file, report which were caught.

    python tests/mutants_design_space.py [--only SUBSTRING ...] [--list]

Each mutant is (file, exact original text, replacement, pytest selection). The original text must occur exactly once
(the script refuses otherwise, so a refactor that moves the line shows up here). A mutant is *caught* when the
selection fails. Files are restored even if the run is interrupted. Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
A = "tests/test_axes.py"
D = "tests/test_design_space.py"
T = "tests/test_trainer_axes.py"
X = "tests/test_distributed.py"
ALG = "tests/test_algorithms.py"
FK = "tests/test_filters_and_keys.py"

MUTANTS: list[tuple[str, str, str, str, list[str]]] = [
    # name, file, original, mutant, pytest arguments
    ("grpo weight without N", "lgrpo_bench/algorithms/aggregation/seq_mean_token_mean.py",
     "as_like(inputs.num_completions, lengths).clamp(min=1.0) * lengths", "lengths",
     [ALG, "-k", "grpo_weights"]),
    ("token mean over the micro-batch", "lgrpo_bench/algorithms/aggregation/token_mean.py",
     "as_like(inputs.num_tokens, lengths)",
     "as_like(inputs.num_tokens if inputs.local_num_tokens is None else inputs.local_num_tokens, lengths)",
     [T, "-k", "equal_trl and dapo-4"]),
    ("Dr. GRPO constant uses the longest completion", "lgrpo_bench/algorithms/aggregation/constant.py",
     "* inputs.max_completion_length)", "* inputs.lengths.max())", [ALG, "-k", "dr_grpo_weights"]),
    ("local token mean without M", "lgrpo_bench/algorithms/aggregation/local_token_mean.py",
     " * inputs.num_micro_batches)", ")", [T, "-k", "equal_trl and bnpo-4"]),
    ("prompt mean per completion", "lgrpo_bench/algorithms/aggregation/prompt_mean.py",
     "* group_tokens)", "* lengths.clamp(min=1.0))", [A, "-k", "prompt_mean"]),
    ("λ z-score with the sample std", "lgrpo_bench/algorithms/base.py",
     "lengths.std(dim=-1, unbiased=False, keepdim=True)", "lengths.std(dim=-1, unbiased=True, keepdim=True)",
     [ALG, "-k", "zscores or hand_computed"]),
    ("index_in_group off by one", "lgrpo_bench/training/trainer.py",
     "lgrpo_index_in_group=rows % group_size,", "lgrpo_index_in_group=(rows + 1) % group_size,",
     [T, "-k", "row_weights"]),
    ("clip takes the max", "lgrpo_bench/algorithms/surrogate/clip.py",
     "-torch.min(unclipped * advantages", "-torch.max(unclipped * advantages", [A, "-k", "clip_by_hand"]),
    ("clip upper bound uses ε_low", "lgrpo_bench/algorithms/surrogate/clip.py",
     "torch.clamp(ratio, 1 - params.epsilon_low, 1 + params.epsilon_high)",
     "torch.clamp(ratio, 1 - params.epsilon_low, 1 + params.epsilon_low)", [A, "-k", "clip_by_hand"]),
    ("cispo weight not detached", "lgrpo_bench/algorithms/surrogate/cispo.py",
     "max=params.cispo_epsilon_max).detach()", "max=params.cispo_epsilon_max)", [A, "-k", "cispo_by_hand"]),
    ("sapo temperatures swapped", "lgrpo_bench/algorithms/surrogate/sapo.py",
     "torch.where(advantages > 0, positive, negative)", "torch.where(advantages > 0, negative, positive)",
     [A, "-k", "sapo_by_hand"]),
    ("gspo ratio over padding too", "lgrpo_bench/algorithms/surrogate/gspo.py",
     "(log_ratio * mask).sum(-1) / mask.sum(-1)", "log_ratio.sum(-1) / mask.sum(-1)", [A, "-k", "gspo"]),
    ("gspo ratio not length-normalised", "lgrpo_bench/algorithms/surrogate/gspo.py",
     "(log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)", "(log_ratio * mask).sum(-1)", [A, "-k", "gspo"]),
    ("group std with ddof 0", "lgrpo_bench/algorithms/advantage/statistics.py",
     "count / (count - 1).clamp(min=1)", "count / count", [A, "-k", "group_std"]),
    ("Dr. GRPO with std-scaled advantages", "lgrpo_bench/algorithms/presets.py",
     '"constant", "clip", "group_mean", "none"', '"constant", "clip", "group_std", "none"',
     [D, "-k", "dr_grpo"]),
    ("Dr. GRPO advantage divided by the group std", "lgrpo_bench/algorithms/advantage/group_mean.py",
     "torch.nan_to_num(rewards - group_means(rewards, group_size), nan=0.0)",
     "torch.nan_to_num((rewards - group_means(rewards, group_size)) / (rewards.view(-1, group_size).std(dim=1)"
     ".repeat_interleave(group_size) + 1e-4), nan=0.0)", [A, "-k", "group_mean_by_hand"]),
    ("Dr. GRPO maps to TRL scale_rewards=group", "lgrpo_bench/algorithms/presets.py",
     '"group_mean": "none"', '"group_mean": "group"', [T, "-k", "advantages_equal and group_mean"]),
    ("trainer always uses group_std advantages", "lgrpo_bench/training/trainer.py",
     "ADVANTAGES[algorithm.advantage]", 'ADVANTAGES["group_std"]', [T, "-k", "advantages_equal and group_mean"]),
    ("batch std over every group", "lgrpo_bench/algorithms/advantage/batch_std.py",
     "kept = rewards[keep > 0]", "kept = rewards", [A, "-k", "batch_std"]),
    ("trainer ignores the advantage axis", "lgrpo_bench/training/trainer.py",
     '        output["advantages"] = advantages[start : start + n_local].to(output["advantages"].dtype)\n', "",
     [T, "-k", "advantages_equal and group_mean"]),
    ("filter decides on the shaped reward", "lgrpo_bench/training/trainer.py",
     "keep_groups(all_accuracy.view(-1, group_size))", "keep_groups(all_rewards.view(-1, group_size))",
     [T, "-k", "group_filter_decides and drop"]),
    ("dropped groups stay in Σ|o|", "lgrpo_bench/training/trainer.py",
     "lgrpo_num_tokens=(all_lengths * keep).sum(),", "lgrpo_num_tokens=all_lengths.sum(),",
     [T, "-k", "group_filter_decides and drop"]),
    ("dapo_full without the truncation mask", "lgrpo_bench/training/trainer.py",
     "        self.mask_truncated_completions = algorithm.mask_truncated_completions\n", "",
     [T, "-k", "truncated"]),
    ("dapo_full preset without the truncation mask", "lgrpo_bench/algorithms/presets.py",
     '"resample", mask_truncated_completions=True,', '"resample", mask_truncated_completions=False,',
     [D, "-k", "dapo_full"]),
    ("dropped groups stay in N", "lgrpo_bench/training/trainer.py",
     "lgrpo_num_completions=keep.sum(),", "lgrpo_num_completions=keep.sum() * 0 + all_lengths.numel(),",
     [T, "-k", "group_filter_decides and drop"]),
    ("dropped groups stay in P", "lgrpo_bench/training/trainer.py",
     "lgrpo_num_groups=keep.sum() / group_size,", "lgrpo_num_groups=keep.sum() * 0 + all_lengths.numel() / group_size,",
     [T, "-k", "group_filter_decides and drop"]),
    ("dropped rows keep their weight", "lgrpo_bench/training/trainer.py",
     "self.aggregation.weight(weight_inputs, lam, self.algorithm.r or 0.0) * keep",
     "self.aggregation.weight(weight_inputs, lam, self.algorithm.r or 0.0)", [T, "-k", "micro_batch_split and drop"]),
    ("resample never says the cap was reached", "lgrpo_bench/training/trainer.py",
     "cap_reached=min(counts) < target)", "cap_reached=False)", [T, "-k", "group_filter_decides and resample"]),
    ("resample pads with uniform groups first", "lgrpo_bench/algorithms/group_filter/resample.py",
     "chosen = mixed[:target]", "chosen = []", [A, "-k", "select_groups"]),
    ("resample stops when one process is full", "lgrpo_bench/algorithms/group_filter/resample.py",
     "min(mixed_counts) < target", "max(mixed_counts) < target", [A, "-k", "another_round"]),
    ("every process draws the same extra prompts", "lgrpo_bench/algorithms/group_filter/resample.py",
     "drawn[process_index * per_process : (process_index + 1) * per_process]", "drawn[:per_process]",
     [A, "-k", "round_prompts"]),
    # issue 25 (item 5): tests/test_filters_and_keys.py, each bug survived the tests before it
    ("resample pads with the last uniform groups", "lgrpo_bench/algorithms/group_filter/resample.py",
     "chosen += uniform[: target - len(chosen)]", "chosen += uniform[len(uniform) - (target - len(chosen)):]",
     [FK, "-k", "padded_with_the_first"]),
    ("extra-round prompts ignore the step", "lgrpo_bench/algorithms/group_filter/resample.py",
     "rng = np.random.default_rng([seed, step, round_index])", "rng = np.random.default_rng([seed, round_index])",
     [FK, "-k", "depend_on_the_step"]),
    ("extra-round prompts drawn with replacement", "lgrpo_bench/algorithms/group_filter/resample.py",
     "replace=total > dataset_size)", "replace=True)", [FK, "-k", "depend_on_the_step"]),
    ("resample counts the last round's mixed groups only", "lgrpo_bench/training/trainer.py",
     "held = torch.tensor([float(sum(int(m.sum()) for m in mixed_by_round))]",
     "held = torch.tensor([float(int(mixed_by_round[-1].sum()))]", [FK, "-k", "counted_over_every_round"]),
    ("extra-round prompts not in whole groups", "lgrpo_bench/training/trainer.py",
     "return [self.train_dataset[i] for i in indices for _ in range(group_size)]",
     "return [self.train_dataset[i] for _ in range(group_size) for i in indices]", [FK, "-k", "whole_groups"]),
    ("filtered share over one round's groups", "lgrpo_bench/training/trainer.py",
     "generated_groups = rounds * all_lengths.numel() // group_size", "generated_groups = all_lengths.numel() // group_size",
     [FK, "-k", "count_every_generated_group"]),
    ("an unscored completion makes no group mixed", "lgrpo_bench/algorithms/group_filter/mixed.py",
     "values = accuracy.float().nan_to_num(nan=0.0)", "values = accuracy.float()",
     [FK, "-k", "unscored_completion_as_incorrect"]),
    ("total reward NaN when any function declined", "lgrpo_bench/training/trainer.py",
     "total[torch.isnan(per_func).all(dim=1)] = torch.nan", "total[torch.isnan(per_func).any(dim=1)] = torch.nan",
     [FK, "-k", "no_reward_function_scored"]),
    ("Dr. GRPO advantage NaN for an unscored completion", "lgrpo_bench/algorithms/advantage/group_mean.py",
     "torch.nan_to_num(rewards - group_means(rewards, group_size), nan=0.0)", "rewards - group_means(rewards, group_size)",
     [FK, "-k", "group_mean_advantage"]),
    ("batch std not NaN-aware", "lgrpo_bench/algorithms/advantage/batch_std.py",
     "std = nanstd(kept) if", "std = kept.std() if", [FK, "-k", "batch_std_advantage"]),
    ("local token mean counts dropped rows", "lgrpo_bench/training/trainer.py",
     'local_num_tokens=(inputs["lgrpo_lengths"] * keep).sum(),', 'local_num_tokens=inputs["lgrpo_lengths"].sum(),',
     [FK, "-k", "local_token_mean_counts"]),
    ("baseline option never matched", "lgrpo_bench/reports/keys.py",
     "and len(options) == 1 and values[position] not in options:", "and values[position] not in options:",
     [FK, "-k", "baseline_that_varies"]),
    ("every *seed key a replicate in reports", "lgrpo_bench/reports/keys.py",
     "    if key in SEED_KEYS or key in NON_CONFIG_PARAMS:\n        return False",
     '    if key.endswith("seed") or key in NON_CONFIG_PARAMS:\n        return False', [FK, "-k", "replicates_in_reports"]),
    ("every *seed key a seed in grids", "lgrpo_bench/config/grid.py",
     "for key, value in values.items() if key != SEED_KEY])",
     'for key, value in values.items() if not key.endswith("seed")])', [FK, "-k", "groups_grid_points"]),
    ("hardware tag names the GPU of a CPU computation", "lgrpo_bench/tracking/provenance.py",
     "TAG_HARDWARE: hardware_summary(cpu, capability, device if use_cuda else None, count if use_cuda else 0),",
     "TAG_HARDWARE: hardware_summary(cpu, capability, device, count),", [FK, "-k", "tagged_cpu"]),
    ("NaN warm start advised as too good", "lgrpo_bench/models/presets.py",
     "if math.isnan(self.greedy_acc) or self.greedy_acc < self.band.low:", "if self.greedy_acc < self.band.low:",
     [FK, "-k", "nan_warm_start"]),
    ("token weight records never kept", "lgrpo_bench/training/trainer.py",
     'if mode == "train" and self.accelerator.is_main_process:', 'if mode == "eval" and self.accelerator.is_main_process:',
     ["tests/test_train_run.py::test_short_run_logs_the_documented_schema[grpo]"]),
    ("rate limit at lr instead of 0.9·lr", "lgrpo_bench/training/lambda_rate.py",
     "return abs(delta) >= RATE_LIMIT_FRACTION * lr", "return abs(delta) >= lr", [A, "-k", "rate_limit"]),
    ("λ gradient ascent", "lgrpo_bench/training/trainer.py",
     "        self._lam_before_step = float(self.lam.detach())\n        grad =",
     "        if self.lam.grad is not None:\n            self.lam.grad = -self.lam.grad\n        self._lam_before_step = float(self.lam.detach())\n        grad =",
     [T, "-k", "optimizer_step"]),
    ("λ gradient not cleared after a step", "lgrpo_bench/training/trainer.py",
     "        self.lambda_optimizer.step()\n        self.lam.grad = None\n", "        self.lambda_optimizer.step()\n",
     [T, "-k", "optimizer_step"]),
    ("λ gradient clipped", "lgrpo_bench/training/trainer.py",
     "        grad = 0.0 if self.lam.grad is None else float(self.lam.grad)\n",
     "        if self.lam.grad is not None:\n            torch.nn.utils.clip_grad_norm_([self.lam], self.args.max_grad_norm)\n"
     "        grad = 0.0 if self.lam.grad is None else float(self.lam.grad)\n", [T, "-k", "optimizer_step"]),
    ("λ Adam maximises the loss", "lgrpo_bench/training/lambda_optimizer.py",
     "eps=eps, weight_decay=0.0, fused=fused)", "eps=eps, weight_decay=0.0, fused=fused, maximize=True)",
     [T, "-k", "optimizer_step and adam"]),
    ("λ SGD maximises the loss", "lgrpo_bench/training/lambda_optimizer.py",
     "torch.optim.SGD([lam], lr=lambda_lr)", "torch.optim.SGD([lam], lr=lambda_lr, maximize=True)",
     [T, "-k", "optimizer_step and sgd"]),
    ("λ Adam with weight decay", "lgrpo_bench/training/lambda_optimizer.py",
     "eps=eps, weight_decay=0.0, fused=fused)", "eps=eps, weight_decay=0.1, fused=fused)",
     [T, "-k", "optimizer_step and adam"]),
    ("λ SGD ignores the LR schedule", "lgrpo_bench/training/lambda_optimizer.py",
     "    return lambda_lr * policy_lr / base_lr",
     "    return lambda_lr", [T, "-k", "optimizer_step and sgd"]),
    ("TRL mapping: bnpo taken for dapo", "lgrpo_bench/algorithms/presets.py",
     '("local_token_mean", "clip"): "bnpo",', '("local_token_mean", "clip"): "dapo",', [T, "-k", "equal_trl and bnpo-4"]),
    ("unused hyperparameters kept in the run id", "lgrpo_bench/algorithms/presets.py",
     "        for hyperparameter in VALUE_HYPERPARAMETERS.get((axis, axes[axis]), ()):",
     "        for hyperparameter in HYPERPARAMETERS.values():", [D, "-k", "unused or run_id"]),
    ("λ's learning rate kept in the run id of a frozen λ", "lgrpo_bench/algorithms/presets.py",
     "            if condition is not None and values.get(condition[0]) != condition[1]:",
     "            if False:", [D, "-k", "unused or run_id"]),
    ("r refused only above the bound, not at it", "lgrpo_bench/algorithms/aggregation/lambda_preference.py",
     "    if r >= max_safe_r(num_generations):", "    if r > max_safe_r(num_generations):", [D, "-k", "refused"]),
    ("a cispo cap below 1 accepted", "lgrpo_bench/algorithms/surrogate/cispo.py",
     "    if cap < 1:", "    if cap < 0:", [D, "-k", "refused"]),
    ("a preset's own value left out of the config field's description", "lgrpo_bench/algorithms/presets.py",
     "        none = f\"the preset's ({'; '.join([default, *own])})\" if own else default",
     "        none = default", [D, "-k", "config_fields"]),
    ("resume tolerates a checkpoint without λ's state", "lgrpo_bench/training/trainer.py",
     "elif self.algorithm.uses_lambda:", "elif False:", ["tests/test_trainer_loss.py", "-k", "never_resumed"]),
    ("off-policy mask option silently ignored", "lgrpo_bench/training/trainer.py",
     '            "off_policy_mask_threshold": (args.off_policy_mask_threshold, None),\n', "",
     [T, "-k", "does_not_implement"]),
    ("image inputs silently ignored", "lgrpo_bench/training/trainer.py",
     'if {"image", "images"} & set(columns):', "if False:", [T, "-k", "does_not_implement"]),
    # 2-process checks (real gloo processes): the sharded normalisers, scale, slice and λ averaging
    ("normaliser over this process's rows", "lgrpo_bench/training/trainer.py",
     "lgrpo_num_completions=keep.sum(),", "lgrpo_num_completions=keep[rows].sum(),", [X, "-k", "one_does"]),
    ("loss scale without the process count", "lgrpo_bench/training/trainer.py",
     "scale = float(self.accelerator.num_processes)", "scale = 1.0", [X, "-k", "one_does"]),
    ("wrong per-process row slice", "lgrpo_bench/training/trainer.py",
     "start = self.accelerator.process_index * n_local", "start = 0", [X, "-k", "one_does"]),
    ("rewards of the wrong process", "lgrpo_bench/training/trainer.py",
     "local = slice(self.accelerator.process_index * n_local, (self.accelerator.process_index + 1) * n_local)",
     "local = slice(0, n_local)", [X, "-k", "own_rewards"]),
    ("λ gradient summed across processes", "lgrpo_bench/training/trainer.py",
     'self.accelerator.reduce(self.lam.grad, reduction="mean")', 'self.accelerator.reduce(self.lam.grad, reduction="sum")',
     [X, "-k", "one_does"]),
]


def run(mutant, timeout: int) -> tuple[bool, float, str]:
    name, file, original, replacement, selection = mutant
    path = ROOT / file
    source = path.read_text()
    if source.count(original) != 1:
        raise SystemExit(f"{name}: the original text occurs {source.count(original)} times in {file}")
    started = time.perf_counter()
    try:
        path.write_text(source.replace(original, replacement))
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *selection],
                                cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    finally:
        path.write_text(source)
    last = [line for line in result.stdout.splitlines() if line.strip()][-1:] or ["(no output)"]
    return result.returncode != 0, time.perf_counter() - started, last[0]


def main(mutants: list | None = None, doc: str | None = None) -> None:
    mutants = MUTANTS if mutants is None else mutants
    parser = argparse.ArgumentParser(description=doc or __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=None,
                        help="run the mutants whose name contains this (repeat for several)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--timeout", type=int, default=1800)
    options = parser.parse_args()
    chosen = [m for m in mutants if options.only is None or any(part in m[0] for part in options.only)]
    if options.list:
        for mutant in chosen:
            print(f"{mutant[0]:45s} {mutant[1]}  ->  {' '.join(mutant[4])}")
        return
    survivors = []
    for mutant in chosen:
        caught, seconds, last = run(mutant, options.timeout)
        print(f"{'CAUGHT  ' if caught else 'SURVIVED'} {mutant[0]:45s} {seconds:6.0f} s  {' '.join(mutant[4])}  | {last}", flush=True)
        if not caught:
            survivors.append(mutant[0])
    print(f"{len(chosen) - len(survivors)}/{len(chosen)} caught" + (f"; survived: {', '.join(survivors)}" if survivors else ""))
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()

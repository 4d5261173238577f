"""Batched generation with a transformers model (greedy or sampled), used for held-out accuracy and evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Completions:
    """``texts[i]`` (special tokens dropped) and ``lengths[i]`` (generated tokens, EOS included) for prompt i."""

    texts: list[str]
    lengths: list[int]


@torch.inference_mode()
def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> Completions:
    """Completions in prompt order. Prompts are sorted by token length and left-padded per batch, so the
    padding (which changes nothing in the result) stays small."""
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i))
    texts: list[str] = [""] * len(encoded)
    lengths: list[int] = [0] * len(encoded)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_id = tokenizer.eos_token_id
    device = next(model.parameters()).device
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if do_sample else dict(do_sample=False)
    for first in range(0, len(order), batch_size):
        rows = order[first : first + batch_size]
        width = max(len(encoded[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for row, index in enumerate(rows):
            ids = encoded[index]
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
        output = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_id,
                                num_beams=1, **sampling)
        generated = output[:, width:].cpu()
        for row, index in enumerate(rows):
            ids = generated[row].tolist()
            n = ids.index(eos_id) + 1 if eos_id in ids else len(ids)
            lengths[index] = n
            texts[index] = tokenizer.decode(ids[:n], skip_special_tokens=True)
    return Completions(texts, lengths)

"""A tiny Qwen2-compatible byte-level BPE tokenizer, trained locally (no hub access).

Why it is built this way: transformers 5 loads every tokenizer saved next to a ``model_type: qwen2`` model
(and every folder whose ``tokenizer_config.json`` names ``Qwen2Tokenizer``) as ``Qwen2Tokenizer``, which
rebuilds the ``tokenizers`` pipeline from the vocabulary and merges with Qwen's own normalizer (NFC),
split regex (digits split singly) and byte-level pre-tokenizer/decoder. A tokenizer trained with any other
pipeline reloads silently different (spaces dropped, digits merged). So we train with exactly that
pipeline and then hand the vocabulary and merges to ``Qwen2Tokenizer`` itself: what we save is what
``AutoTokenizer.from_pretrained`` rebuilds.

Vocabulary: the three special tokens (ids 0-2), the 256 byte-level symbols, and the merges the BPE trainer
finds on arith completions up to :data:`TINY_VOCAB_SIZE` (in practice one merge, ``|=``). Qwen's split
regex isolates every digit and groups punctuation runs, so only punctuation can merge on arith text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

__all__ = [
    "ASSISTANT_TOKEN",
    "EOS_TOKEN",
    "SPECIAL_TOKENS",
    "TINY_VOCAB_SIZE",
    "USER_TOKEN",
    "build_tokenizer",
    "make_tokenizer",
]

EOS_TOKEN = "<|endoftext|>"
"""End of sequence and padding token."""
USER_TOKEN = "<|user|>"
ASSISTANT_TOKEN = "<|assistant|>"
SPECIAL_TOKENS: tuple[str, ...] = (EOS_TOKEN, USER_TOKEN, ASSISTANT_TOKEN)

TINY_VOCAB_SIZE = 261
"""Upper bound handed to the BPE trainer (3 specials + 256 bytes + up to 2 merges)."""


def _training_corpus() -> list[str]:
    """Deterministic arith text: prompts and both completion styles."""
    from lgrpo_bench.tasks.arith import direct_solution, generate_problems, worked_solution

    corpus = []
    for problem in generate_problems(2_000, seed=0, digits=(1, 2, 3, 4), id_prefix="tokenizer"):
        corpus.append(problem.problem)
        corpus.append(direct_solution(problem))
        corpus.append(worked_solution(problem))
    return corpus


def _train_vocab_and_merges(vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    bpe = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_training_corpus(), trainer)
    vocab = bpe.get_vocab(with_added_tokens=True)
    # The trained merges are read back through the serialized model (a list of pairs).
    merges_raw = json.loads(bpe.to_str())["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges_raw]
    return dict(sorted(vocab.items(), key=lambda kv: kv[1])), merges


def make_tokenizer(*, padding_side: str = "left", vocab_size: int = TINY_VOCAB_SIZE) -> PreTrainedTokenizerBase:
    """Train the tiny vocabulary and return it as a ``Qwen2Tokenizer`` (in memory, nothing saved).

    eos = pad = unk = ``<|endoftext|>``; ``<|user|>`` and ``<|assistant|>`` are extra special tokens (each a
    single id, never split). Deterministic: the same call always gives the same ids.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    vocab, merges = _train_vocab_and_merges(vocab_size)
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        extra_special_tokens=[USER_TOKEN, ASSISTANT_TOKEN],
        padding_side=padding_side,
    )


def build_tokenizer(out_dir: str | os.PathLike[str], *, padding_side: str = "left") -> PreTrainedTokenizerBase:
    """Train the tiny tokenizer, save it to ``out_dir`` and return it.

    ``AutoTokenizer.from_pretrained(out_dir)`` reloads a tokenizer with identical ids and decoding
    (``tokenizer.json`` + ``tokenizer_config.json`` naming ``Qwen2Tokenizer``, padding side saved).
    """
    tokenizer = make_tokenizer(padding_side=padding_side)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer

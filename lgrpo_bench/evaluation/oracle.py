r"""Oracle models: lm-eval ``LM`` implementations that answer from the gold answer, to test the pipeline.

``oracle:gold`` answers every problem with its gold answer, written the way the prompt asks; ``oracle:wrong``
with an answer that is wrong. They are registered with lm-eval (``lm_eval --model oracle:gold``), receive
the same requests a real model does (rendered prompt, generation kwargs, ``repeats`` copies) and their
completions go through the same filter, scorer and aggregation. An oracle reads the gold answer from the
request's doc (``Instance.doc["answer"]``), which a real model never sees.

How the answer is written (decided from the prompt text, as a model would read it):

* the prompt asks for ``\boxed{}`` (``qwen_math``, ``r1``): ``The final answer is $\boxed{<answer>}$.``
* the arith prompt (ends with ``<|assistant|>``): ``=<answer>`` (the direct answer style);
* otherwise: ``The answer is <answer>.``

Wrong answers: for an integer or decimal gold, the gold plus one (``"16"`` → ``17``, ``"0.5"`` → ``1.5``);
for any other gold, :data:`WRONG_SENTINEL`, a number no gold of our data equals (scored through math-verify
like any answer, so a multiple-choice gold, a tuple or an expression is compared against it for real).

Completion lengths of oracles are counted in characters (they have no tokenizer).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

__all__ = ["ORACLE_GOLD", "ORACLE_WRONG", "ORACLES", "WRONG_SENTINEL", "OracleLM", "oracle_completion", "wrong_answer"]

ORACLE_GOLD = "oracle:gold"
ORACLE_WRONG = "oracle:wrong"
ORACLES = (ORACLE_GOLD, ORACLE_WRONG)
WRONG_SENTINEL = "-987654321"
_PLAIN_NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")


def wrong_answer(gold: str) -> str:
    """``gold + 1`` for a plain integer or decimal gold, else :data:`WRONG_SENTINEL`."""
    if _PLAIN_NUMBER.match(gold):
        try:
            return str(Decimal(gold.strip()) + 1)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
            pass
    return WRONG_SENTINEL


def oracle_completion(prompt: str, answer: str) -> str:
    """``answer`` written the way ``prompt`` asks (see the module docstring)."""
    if "\\boxed" in prompt:
        return f"The final answer is $\\boxed{{{answer}}}$."
    if prompt.rstrip().endswith("<|assistant|>"):
        return f"={answer}"
    return f"The answer is {answer}."


class OracleLM(LM):
    """An lm-eval model answering each request with its doc's gold (``wrong=False``) or a wrong answer."""

    def __init__(self, wrong: bool = False) -> None:
        super().__init__()
        self.wrong = bool(wrong)

    @property
    def name(self) -> str:
        return ORACLE_WRONG if self.wrong else ORACLE_GOLD

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        completions = []
        for request in requests:
            prompt = request.args[0]
            gold = str(request.doc["answer"])
            completions.append(oracle_completion(prompt, wrong_answer(gold) if self.wrong else gold))
        return completions

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("oracle models answer generation tasks only")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("oracle models answer generation tasks only")

    def count_tokens(self, text: str) -> int:
        """Length of a completion: characters (oracles have no tokenizer)."""
        return len(text)


@register_model(ORACLE_GOLD)
class GoldOracleLM(OracleLM):
    def __init__(self, **_: object) -> None:
        super().__init__(wrong=False)


@register_model(ORACLE_WRONG)
class WrongOracleLM(OracleLM):
    def __init__(self, **_: object) -> None:
        super().__init__(wrong=True)

"""Model presets and the warm-start band, known without torch: tiny presets' shapes and recipes, Qwen presets.

Importing this module imports neither torch nor transformers (a grid is checked against these names before
anything heavy is loaded). The recipe's numbers are measured in :mod:`lgrpo_bench.models.tiny`'s docstring.

The band
    A warm start is *in band* when its greedy accuracy on the canonical held-out arith split lies in
    ``[WARM_START_BAND.low, WARM_START_BAND.high]`` (bounds included): below it GRPO-family RL gets little
    signal from a model that has not learnt the task's answer format; above it there is little room left
    to improve. :func:`warm_start_band_check` is the pure test, and its verdict's ``warning`` the one line a
    build prints when a start lands outside.

The stopping rule
    :class:`StopRule` stops a warm start's SFT by *where the model is*: greedy accuracy on a validation split
    (disjoint from the SFT stream and from the test split, see :func:`lgrpo_bench.tasks.arith.validation_problems`)
    is checked every ``check_every`` steps and the SFT stops once it enters ``[target_low, target_high]``, a
    sub-band in the middle of the band; see :func:`lgrpo_bench.models.sft.stop_decision`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lgrpo_bench.tasks.arith import ARITH_DEFAULT_DIGITS

__all__ = [
    "QWEN_PRESETS",
    "RECIPE_VERSION",
    "TINY_PRESETS",
    "WARM_START_BAND",
    "BandVerdict",
    "StopRule",
    "TinyPreset",
    "WarmStartBand",
    "get_preset",
    "preset_names",
    "warm_start_band_check",
]

RECIPE_VERSION = 2
"""Bump when anything that changes the built weights or metrics changes (part of the cache key).
2: SFT stopped by the validation rule (:class:`StopRule`), the SFT stream also excludes the validation split."""

QWEN_PRESETS: dict[str, str] = {
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B",
    "qwen2.5-3b": "Qwen/Qwen2.5-3B",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B",
    "qwen2.5-math-1.5b": "Qwen/Qwen2.5-Math-1.5B",
    "qwen2.5-math-7b": "Qwen/Qwen2.5-Math-7B",
}
"""Base (not instruct) models of the paper's experiments, by short name."""


@dataclass(frozen=True)
class WarmStartBand:
    """Greedy held-out accuracy a tiny warm start should have, ``low <= acc <= high``."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.low < self.high <= 1.0:
            raise ValueError(f"a band needs 0 <= low < high <= 1, got {self.low}..{self.high}")

    def __str__(self) -> str:
        return f"{self.low:.2f}–{self.high:.2f}"


WARM_START_BAND = WarmStartBand(0.25, 0.65)
"""The one band of every tiny preset (measured: ``benchmarks/warm_start.py``, seeds 0..4, all inside)."""


@dataclass(frozen=True)
class BandVerdict:
    """Whether a warm start lies in its band; ``warning`` is the line to print when it does not (else None)."""

    preset: str
    seed: int
    greedy_acc: float
    band: WarmStartBand
    in_band: bool

    @property
    def warning(self) -> str | None:
        if self.in_band:
            return None
        if math.isnan(self.greedy_acc) or self.greedy_acc < self.band.low:
            advice = ("too little RL signal; try another model.warm_start_seed or a larger model.warm_start_steps "
                      "(the SFT step budget)")
        else:
            advice = "little room left for RL to improve; try another model.warm_start_seed"
        return (f"warning: warm start {self.preset} seed {self.seed} has greedy held-out accuracy "
                f"{self.greedy_acc:.3f}, outside its band {self.band}: {advice}")


def warm_start_band_check(preset: str, seed: int, greedy_acc: float, band: WarmStartBand = WARM_START_BAND) -> BandVerdict:
    """``in_band`` iff ``band.low <= greedy_acc <= band.high`` (NaN is out of band)."""
    return BandVerdict(preset, seed, float(greedy_acc), band, bool(band.low <= greedy_acc <= band.high))


@dataclass(frozen=True)
class StopRule:
    """When a warm start's SFT stops: see :func:`lgrpo_bench.models.sft.stop_decision`.

    Validation greedy accuracy (first ``validation_size`` problems of the validation split) is measured at
    every multiple of ``check_every`` from ``first_check`` on, and at the last step of the budget.
    """

    target_low: float
    target_high: float
    check_every: int = 25
    first_check: int = 100
    validation_size: int = 300

    def __post_init__(self) -> None:
        if not 0.0 <= self.target_low <= self.target_high <= 1.0:
            raise ValueError(f"a stop rule needs 0 <= target_low <= target_high <= 1, "
                             f"got {self.target_low}..{self.target_high}")
        if self.check_every < 1 or self.first_check < 1 or self.validation_size < 1:
            raise ValueError("check_every, first_check and validation_size must be >= 1")

    def is_check_step(self, step: int, max_steps: int) -> bool:
        """Whether validation accuracy is measured after ``step`` (1-based) of a ``max_steps`` budget."""
        return step == max_steps or (step >= self.first_check and step % self.check_every == 0)




@dataclass(frozen=True)
class TinyPreset:
    """Shape and warm-start recipe of one tiny preset. ``sft_steps`` is the SFT step budget, the most steps
    the build takes; ``stop`` usually ends it earlier."""

    name: str
    hidden_size: int
    num_layers: int
    heads: int
    kv_heads: int
    intermediate: int
    sft_steps: int
    worked_fraction: float = 0.3
    batch_size: int = 64
    lr: float = 3e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0
    digits: tuple[int, ...] = ARITH_DEFAULT_DIGITS
    max_position_embeddings: int = 256
    init_std: float = 0.02
    stop: StopRule = StopRule(target_low=0.30, target_high=0.50)


TINY_PRESETS: dict[str, TinyPreset] = {
    # Measured on this 2-core CPU (see lgrpo_bench.models.tiny). TINY_RL's lr 5e-3 was too high for the wider
    # models (0.57M: 17 % greedy after 1,000 steps at 5e-3, 55 % at 3e-3; 1.2M: 2e-3 beat 5e-3 and 1e-2), and an
    # init std of 0.05 instead of Qwen's 0.02 halved the steps the two larger models need.
    "tiny-s": TinyPreset(
        "tiny-s", hidden_size=64, num_layers=3, heads=4, kv_heads=2, intermediate=256,
        sft_steps=3000, lr=3e-3, init_std=0.02, stop=StopRule(target_low=0.30, target_high=0.50, first_check=300),
    ),
    "tiny-m": TinyPreset(
        "tiny-m", hidden_size=96, num_layers=4, heads=6, kv_heads=2, intermediate=384,
        sft_steps=1500, lr=3e-3, init_std=0.05,
    ),
    "tiny-l": TinyPreset(
        "tiny-l", hidden_size=128, num_layers=5, heads=8, kv_heads=2, intermediate=512,
        sft_steps=1500, lr=2e-3, init_std=0.05,
    ),
}


def preset_names() -> list[str]:
    """Every preset name, tiny first (for messages)."""
    return [*TINY_PRESETS, *QWEN_PRESETS]


def get_preset(preset: str | TinyPreset) -> TinyPreset:
    """The :class:`TinyPreset` of a name (a spec is returned as is); ``ValueError`` names the known presets."""
    if isinstance(preset, TinyPreset):
        return preset
    try:
        return TINY_PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown tiny preset {preset!r}; known: {', '.join(TINY_PRESETS)}") from None

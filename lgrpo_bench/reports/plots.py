"""Report figures (matplotlib ``Figure`` objects, saved through the Agg canvas): training curves, implied token preference, accuracy vs compute.

Each ``*_figure`` function takes plain data (no MLflow) and returns a ``matplotlib.figure.Figure``;
:func:`save_figure` writes it as PNG and PDF and returns the PNG bytes (for the HTML page).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lgrpo_bench.reports.preference import example_group_lengths, implied_token_weights
from lgrpo_bench.reports.stats import aggregate_curves

__all__ = ["CURVE_METRICS", "accuracy_vs_compute_figure", "save_figure", "token_preference_figure", "training_curves_figure"]

CURVE_METRICS: dict[str, str] = {
    "train/reward_mean": "reward (mean)",
    "train/completion_length_mean": "completion length (tokens)",
    "train/entropy": "entropy (nats/token)",
    "train/lambda": "λ (λ-GRPO)",
}
"""Metric → axis label of the training-curve panels (a panel without data is left out)."""


def _figure(columns: int, width: float, height: float):
    """A ``matplotlib.figure.Figure`` with 1 × ``columns`` axes, outside pyplot (no global backend state,
    nothing to close; saving uses the Agg canvas)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns, height))
    return figure, figure.subplots(1, columns, squeeze=False)


def training_curves_figure(curves: Mapping[str, Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]]]):
    """Panels per metric (``{metric: {series label: [(steps, values) per seed]}}``): mean over seeds ± 1 std band."""
    metrics = [m for m in curves if any(any(len(s) for s, _ in runs) for runs in curves[m].values())]
    figure, axes = _figure(max(len(metrics), 1), 4.2, 3.4)
    for axis, metric in zip(axes[0], metrics):
        for label in sorted(curves[metric]):
            steps, mean, std, count = aggregate_curves(curves[metric][label])
            if not steps.size:
                continue
            line, = axis.plot(steps, mean, label=f"{label} (n={int(count.max())})")
            axis.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
        axis.set_xlabel("optimizer step")
        axis.set_ylabel(CURVE_METRICS.get(metric, metric))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    if not metrics:
        axes[0][0].text(0.5, 0.5, "no training metrics logged", ha="center", va="center")
    figure.tight_layout()
    return figure


def token_preference_figure(
    algorithms: Sequence[str], *, group_size: int, max_completion_length: int, r: float = 1 / 9,
    lambdas: Mapping[str, float] | None = None,
):
    """Relative weight per token vs completion length for one group (see :mod:`.preference`).

    ``lambdas``: ``{series label: learned λ}`` for λ-GRPO (one line each); other λ-using algorithms
    without an entry are drawn at λ = 0.
    """
    from lgrpo_bench.algorithms import get_algorithm

    lengths = example_group_lengths(group_size, max_completion_length)
    figure, axes = _figure(1, 5.5, 3.8)
    axis = axes[0][0]
    for algorithm in algorithms:
        spec = get_algorithm(algorithm)
        if spec.uses_lambda and lambdas:
            for label, lam in sorted(lambdas.items()):
                weights = implied_token_weights(algorithm, lengths, max_completion_length=max_completion_length, lam=lam, r=r)
                axis.plot(lengths, weights, marker="o", label=f"{label} (λ={lam:.3g})")
            continue
        weights = implied_token_weights(algorithm, lengths, max_completion_length=max_completion_length,
                                        lam=0.0 if spec.uses_lambda else None, r=r)
        axis.plot(lengths, weights, marker="o", label=algorithm + (" (λ=0)" if spec.uses_lambda else ""))
    axis.axhline(1.0, color="gray", linewidth=0.8, linestyle=":")
    axis.set_xlabel("completion length |o| (tokens)")
    axis.set_ylabel("weight per token / token mean")
    axis.set_title(f"implied token preference (group of G={group_size}, L_max={max_completion_length})", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def accuracy_vs_compute_figure(points_by_size: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], ylabel: str):
    """One panel per model size (``{size: {row label: [(tokens, accuracy) per run]}}``): every run as a point
    (generated tokens, accuracy), one colour per table row, named in the legend."""
    sizes = sorted(points_by_size)
    figure, axes = _figure(max(len(sizes), 1), 4.5, 3.6)
    for axis, size in zip(axes[0], sizes):
        for label in sorted(points_by_size[size]):
            values = np.array(points_by_size[size][label], dtype=float)
            if not values.size:
                continue
            axis.scatter(values[:, 0], 100 * values[:, 1], label=label, alpha=0.8)
        axis.set_xlabel("generated tokens in training")
        axis.set_ylabel(ylabel)
        axis.set_title(size, fontsize=9)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    if not sizes:
        axes[0][0].text(0.5, 0.5, "no run with both accuracy and token counts", ha="center", va="center")
    figure.tight_layout()
    return figure


def save_figure(figure, folder: Path, name: str) -> tuple[list[Path], bytes]:
    """Write ``<folder>/<name>.png`` and ``.pdf``; return the paths and the PNG bytes."""
    import io

    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    png = buffer.getvalue()
    png_path, pdf_path = folder / f"{name}.png", folder / f"{name}.pdf"
    png_path.write_bytes(png)
    figure.savefig(pdf_path, format="pdf")
    return [png_path, pdf_path], png

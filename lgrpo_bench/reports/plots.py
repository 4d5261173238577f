"""Report figures (matplotlib ``Figure`` objects, saved through the Agg canvas): training curves, held-out accuracy,
implied token preference, accuracy vs compute.

Each ``*_figure`` function takes plain data (no MLflow) and returns a ``matplotlib.figure.Figure``;
:func:`save_figure` writes it as PNG (and PDF, for LaTeX) and returns the PNG bytes (for the HTML page).

Telling the series apart: every series (a table row) gets its own colour, line style and marker
(:func:`series_styles`, the same for a label in every figure), bands are light (:data:`BAND_ALPHA`) and drawn
under the lines, markers sit at a few points per line, staggered between series (``markevery``), and a line
that coincides with an earlier one (dapo_full and dapo in the token preference: both weigh every token
equally) is drawn thinner on top of it, its marker smaller inside the other's hollow one, and the title names the
coinciding series. Figures are sized for a 1600-px page at :data:`PNG_DPI` (at most about 1450 px wide).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lgrpo_bench.algorithms.presets import HYPERPARAMETERS
from lgrpo_bench.reports.preference import example_group_lengths, implied_token_weights
from lgrpo_bench.reports.stats import aggregate_curves, learning_curve_mean

__all__ = [
    "BAND_ALPHA",
    "CURVE_METRICS",
    "PNG_DPI",
    "SeriesStyle",
    "accuracy_vs_compute_figure",
    "heldout_accuracy_figure",
    "save_figure",
    "series_styles",
    "token_preference_figure",
    "training_curves_figure",
]

CURVE_METRICS: dict[str, str] = {
    "train/reward_mean": "reward (mean)",
    "train/completion_length_mean": "completion length (tokens)",
    "train/entropy": "entropy (nats/token)",
    "train/lambda": "λ (λ-GRPO)",
}
"""Metric → axis label of the training-curve panels (a panel without data is left out)."""
PNG_DPI = 120
BAND_ALPHA = 0.12
"""Opacity of a ±1 std band: five overlapping bands stay readable (0.2 blended them into one smear)."""
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
"""matplotlib's tab10, red second so the first two series (often the baseline and the first candidate) contrast most."""
_LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (1, 1)))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h")
_MARKERS_PER_LINE = 8
_FONT_SIZE = 10


@dataclass(frozen=True)
class SeriesStyle:
    """How one series is drawn: colour, line style and marker (distinct between series; see :func:`series_styles`)."""

    color: str
    linestyle: object
    marker: str

    def kwargs(self) -> dict:
        return {"color": self.color, "linestyle": self.linestyle, "marker": self.marker}


def series_styles(labels: Sequence[str]) -> dict[str, SeriesStyle]:
    """``{label: style}`` for the sorted distinct labels: the i-th gets colour i, line style i and marker i (each
    cycling), so up to 7 series differ in all three and up to 10 in colour and marker."""
    ordered = sorted(dict.fromkeys(labels))
    return {label: SeriesStyle(_COLOURS[i % len(_COLOURS)], _LINE_STYLES[i % len(_LINE_STYLES)], _MARKERS[i % len(_MARKERS)])
            for i, label in enumerate(ordered)}


def _figure(rows: int, columns: int, width: float, height: float):
    """A ``matplotlib.figure.Figure`` with rows × columns axes of ``width`` × ``height`` inches each, outside pyplot
    (no global backend state, nothing to close; saving uses the Agg canvas)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    return figure, figure.subplots(rows, columns, squeeze=False)


def _markevery(index: int, n_points: int) -> tuple[int, int] | None:
    """A few markers per line, starting at a point that differs between series so coinciding lines show both."""
    if n_points <= _MARKERS_PER_LINE:
        return None
    every = max(1, n_points // _MARKERS_PER_LINE)
    return (index % every, every)


def _legend(figure, axes, columns: int) -> None:
    handles, labels = [], []
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=min(columns, len(labels)), fontsize=_FONT_SIZE, frameon=False)


def _curve_panels(figure_axes, panels: Sequence[tuple[str, Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]]]],
                  styles: Mapping[str, SeriesStyle], scale: float = 1.0, suffix=None) -> None:
    """Mean over seeds ± 1 std band of each series, one panel per (axis label, {series: [(steps, values)]})."""
    for axis, (ylabel, series) in zip(figure_axes, panels):
        for index, label in enumerate(sorted(series)):
            steps, mean, std, count = aggregate_curves(series[label])
            if not steps.size:
                continue
            style = styles[label]
            name = f"{label} (n={int(count.max())}{suffix(label) if suffix else ''})"
            axis.fill_between(steps, scale * (mean - std), scale * (mean + std), color=style.color, alpha=BAND_ALPHA, linewidth=0,
                              zorder=1)
            axis.plot(steps, scale * mean, label=name, linewidth=1.8, markersize=5, markevery=_markevery(index, steps.size),
                      zorder=2, **style.kwargs())
        axis.set_xlabel("optimizer step", fontsize=_FONT_SIZE)
        axis.set_ylabel(ylabel, fontsize=_FONT_SIZE)
        axis.tick_params(labelsize=_FONT_SIZE - 1)
        axis.grid(alpha=0.3)


def training_curves_figure(curves: Mapping[str, Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]]]):
    """Panels per metric (``{metric: {series label: [(steps, values) per seed]}}``), two per row: mean over seeds ±
    1 std band, one legend under the panels (series named with their number of seeds)."""
    metrics = [m for m in curves if any(any(len(s) for s, _ in runs) for runs in curves[m].values())]
    columns = 2 if len(metrics) > 1 else 1
    rows = max(1, -(-len(metrics) // columns))
    figure, axes = _figure(rows, columns, 6.0, 3.6)
    flat = list(axes.flat)
    styles = series_styles([label for metric in metrics for label in curves[metric]])
    _curve_panels(flat, [(CURVE_METRICS.get(m, m), curves[m]) for m in metrics], styles)
    for axis in flat[len(metrics):]:
        axis.set_axis_off()
    if not metrics:
        flat[0].text(0.5, 0.5, "no training metrics logged", ha="center", va="center")
    _legend(figure, flat[:len(metrics)], columns=3)
    return figure


def heldout_accuracy_figure(curves: Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]]):
    """Greedy held-out accuracy (``train/heldout_acc``, in points) against the optimizer step, per series (``{label:
    [(steps, values) per seed]}``): mean over seeds ± 1 std band. The legend gives each series' sample efficiency,
    the mean over its seeds of the time-average of its curve (:func:`~lgrpo_bench.reports.stats.learning_curve_mean`),
    the number the table's Sample eff. column shows."""
    figure, axes = _figure(1, 1, 9.0, 4.6)
    axis = axes[0][0]
    styles = series_styles(list(curves))

    def efficiency(label: str) -> str:
        means = [learning_curve_mean(steps, values) for steps, values in curves[label] if len(steps)]
        kept = [m for m in means if m is not None]
        return f", sample eff. {100 * float(np.mean(kept)):.1f}" if kept else ""

    _curve_panels([axis], [("held-out accuracy (points)", curves)], styles, scale=100.0, suffix=efficiency)
    axis.set_title("held-out accuracy during training (the Sample eff. column is its time-average)", fontsize=_FONT_SIZE)
    if not any(any(len(s) for s, _ in runs) for runs in curves.values()):
        axis.text(0.5, 0.5, "no train/heldout_acc logged", ha="center", va="center", transform=axis.transAxes)
    _legend(figure, [axis], columns=2)
    return figure


def _coinciding(lines: Sequence[tuple[str, np.ndarray]]) -> dict[str, str]:
    """``{label: label of the first earlier series with the same values}`` for series drawn on top of another."""
    first: dict[str, str] = {}
    for index, (label, values) in enumerate(lines):
        for other, other_values in lines[:index]:
            if other not in first and other_values.shape == values.shape and np.allclose(values, other_values, rtol=1e-9, atol=1e-12):
                first[label] = other
                break
    return first


def token_preference_figure(
    algorithms: Sequence[str], *, group_size: int, max_completion_length: int,
    r: float = HYPERPARAMETERS["r"].default,
    lambdas: Mapping[str, float] | None = None,
):
    """Relative weight per token vs completion length for one group (see :mod:`.preference`).

    ``lambdas``: ``{series label: learned λ}`` for λ-GRPO (one line each); other λ-using algorithms without an
    entry are drawn at λ = 0. A line with the same weights as an earlier one is drawn thinner on top of it with a
    smaller marker, and the title names them (module doc).
    """
    from lgrpo_bench.algorithms import get_algorithm

    lengths = example_group_lengths(group_size, max_completion_length)
    series: list[tuple[str, np.ndarray]] = []
    for algorithm in algorithms:
        spec = get_algorithm(algorithm)
        if spec.uses_lambda and lambdas:
            for label, lam in sorted(lambdas.items()):
                weights = implied_token_weights(algorithm, lengths, max_completion_length=max_completion_length, lam=lam, r=r)
                series.append((f"{label} (λ={lam:.3g})", np.asarray(weights, dtype=float)))
            continue
        weights = implied_token_weights(algorithm, lengths, max_completion_length=max_completion_length,
                                        lam=0.0 if spec.uses_lambda else None, r=r)
        series.append((algorithm + (" (λ=0)" if spec.uses_lambda else ""), np.asarray(weights, dtype=float)))
    figure, axes = _figure(1, 1, 9.0, 4.8)
    axis = axes[0][0]
    styles = series_styles([label for label, _ in series])
    on_top = _coinciding(series)
    depth: dict[str, int] = {}
    for label, weights in series:
        depth[label] = depth[on_top[label]] + 1 if label in on_top else 0
        level = depth[label]
        axis.plot(lengths, weights, label=label, linewidth=max(0.8, 2.4 - 0.7 * level), markersize=max(3.0, 9.0 - 2.5 * level),
                  markerfacecolor="white" if level == 0 else styles[label].color, zorder=2 + level, **styles[label].kwargs())
    overlaps = ""
    if on_top:
        groups: dict[str, list[str]] = {}
        for label, _ in series:
            root = label
            while root in on_top:
                root = on_top[root]
            groups.setdefault(root, [root])
            if label != root:
                groups[root].append(label)
        overlaps = "\n" + "; ".join(" = ".join(members) for members in groups.values() if len(members) > 1) + " (same weights: the lines overlap)"
    axis.axhline(1.0, color="gray", linewidth=0.8, linestyle=":")
    axis.set_xlabel("completion length |o| (tokens)", fontsize=_FONT_SIZE)
    axis.set_ylabel("weight per token / token mean", fontsize=_FONT_SIZE)
    axis.set_title(f"implied token preference (group of G={group_size}, L_max={max_completion_length}){overlaps}", fontsize=_FONT_SIZE)
    axis.grid(alpha=0.3)
    _legend(figure, [axis], columns=3)
    return figure


def accuracy_vs_compute_figure(points_by_size: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], ylabel: str):
    """One panel per model size (``{size: {row label: [(tokens, accuracy) per run]}}``, accuracy in the table's unit,
    points for a fraction): every run as a point (generated tokens, accuracy), one colour and marker per table row,
    named in the legend."""
    sizes = sorted(points_by_size)
    columns = max(1, min(len(sizes), 2))
    rows = max(1, -(-len(sizes) // columns))
    figure, axes = _figure(rows, columns, 6.5 if columns > 1 else 9.0, 4.6)
    flat = list(axes.flat)
    styles = series_styles([label for size in sizes for label in points_by_size[size]])
    for axis, size in zip(flat, sizes):
        for label in sorted(points_by_size[size]):
            values = np.array(points_by_size[size][label], dtype=float)
            if not values.size:
                continue
            style = styles[label]
            axis.scatter(values[:, 0], values[:, 1], label=label, alpha=0.85, s=45, color=style.color, marker=style.marker,
                         edgecolors="black", linewidths=0.4)
        axis.set_xlabel("generated tokens in training", fontsize=_FONT_SIZE)
        axis.set_ylabel(ylabel, fontsize=_FONT_SIZE)
        axis.set_title(size, fontsize=_FONT_SIZE)
        axis.grid(alpha=0.3)
    for axis in flat[len(sizes):]:
        axis.set_axis_off()
    if not sizes:
        flat[0].text(0.5, 0.5, "no run with both accuracy and token counts", ha="center", va="center")
    _legend(figure, flat[:len(sizes)], columns=3)
    return figure


def save_figure(figure, folder: Path, name: str, *, pdf: bool = True) -> tuple[list[Path], bytes]:
    """Write ``<folder>/<name>.png`` (:data:`PNG_DPI`) and, with ``pdf``, ``.pdf``; return the paths and the PNG
    bytes."""
    import io

    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI)
    png = buffer.getvalue()
    png_path = folder / f"{name}.png"
    png_path.write_bytes(png)
    if not pdf:
        return [png_path], png
    pdf_path = folder / f"{name}.pdf"
    figure.savefig(pdf_path, format="pdf")
    return [png_path, pdf_path], png

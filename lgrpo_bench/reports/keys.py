"""Which run-config keys tell the rows of a report apart, and which baseline row each row is compared with.

A report never pools different configurations as if they were seeds. Its rows are keyed by

* the model size (a table section) and the algorithm (``algorithm.name``), always;
* every other run-config key whose value differs among the reported runs (from the params a run logs, the
  flattened config of :func:`lgrpo_bench.tracking.schema.flatten_params`), except: algorithm options with one value
  per algorithm name (a preset's resolved axes: the Algorithm column says them),
  the seed keys :data:`SEED_KEYS` (the replicates), keys that never change results
  (:data:`lgrpo_bench.config.schema.IDENTITY_EXCLUDED`: ``tracking.*``, ``eval.*``, ``train.samples_every``,
  ``train.num_threads``; ``eval.seed`` is among them: evaluations are not part of a run's identity) and the
  ``run_id`` param;
* or, with ``--group-by``, exactly the keys given (every other varying key must then be named in
  ``--average-over``, so nothing is pooled by accident).

``--average-over KEY`` makes a key a replicate axis on purpose: its values join the seed in a row's replicate
id (:meth:`RowKeys.replicate`) and the table's caption says so. Two runs of one row with the same replicate id
are an error (:func:`check_replicates`) naming both.

Key order: the grid's axis order when the runs come from a grid file (``key_order``), then the order of the
run config's schema (model, task, algorithm, train; fields as declared), then any other key alphabetically.
Column names: the key's last part (``lam_init``, ``learning_rate``), or the whole dotted key when that part is
shared by two keys or is a name the tables and CSVs already use (``name``, ``seed``, ...).

Baseline matching (:func:`match_baseline`): a row is compared with the baseline row of its model size that has
the same value of every key, except algorithm options (``algorithm.*``) that all baseline rows share: those
belong to the algorithms being compared (λ-GRPO's ``lam_init`` against GRPO, which has none), so the row is
compared with the baseline at its one value, and the Δ table says which keys matched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lgrpo_bench.reports.loader import ReportInputError, RunRecord

__all__ = [
    "ALGORITHM_KEY",
    "NON_CONFIG_PARAMS",
    "SEED_KEYS",
    "BaselineMatch",
    "RowKeys",
    "check_replicates",
    "is_row_key_candidate",
    "match_baseline",
    "resolve_row_keys",
    "sort_key",
]

SEED_KEYS: tuple[str, ...] = ("train.seed", "eval.seed")
"""Replicate axes, never row keys (``eval.seed`` matters for avg@k evaluations)."""
ALGORITHM_KEY = "algorithm.name"
"""Always a row key, shown in its own column."""
ALGORITHM_OPTIONS_PREFIX = "algorithm."
NON_CONFIG_PARAMS: tuple[str, ...] = ("run_id",)
"""Params a train run logs beside its flattened config."""
RESERVED_LABELS: frozenset[str] = frozenset({
    "name", "seed", "model", "model_size", "algorithm", "size", "n", "state", "run_id", "mlflow_run_id", "experiment_id",
    "benchmark", "metric", "value", "column", "delta", "baseline", "hash", "protocol", "k", "temperature", "top_p",
})
"""Names the tables and CSVs already use: a key whose last part is one of them is named by its dotted key."""


def is_row_key_candidate(key: str) -> bool:
    """True for a config param that may tell configurations apart (not a seed, not identity-excluded, not ``run_id``)."""
    from lgrpo_bench.config.schema import IDENTITY_EXCLUDED

    if key in SEED_KEYS or key in NON_CONFIG_PARAMS:
        return False
    section, _, name = key.partition(".")
    if section in IDENTITY_EXCLUDED:
        fields = IDENTITY_EXCLUDED[section]
        if fields is None or name in fields:
            return False
    return True


def _schema_order() -> dict[str, int]:
    """``{dotted leaf key: position}`` in the order the run config declares its sections and fields."""
    from pydantic import BaseModel

    from lgrpo_bench.config.schema import RunConfig

    order: dict[str, int] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name}.")
            else:
                order[f"{prefix}{name}"] = len(order)

    walk(RunConfig, "")
    return order


def _ordered(keys: Iterable[str], key_order: Sequence[str]) -> list[str]:
    schema = _schema_order()
    first = {key: index for index, key in enumerate(key_order)}
    return sorted(keys, key=lambda k: (0, first[k], "") if k in first else (1, schema[k], "") if k in schema else (2, 0, k))


def _labels(keys: Sequence[str]) -> dict[str, str]:
    leaves = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: leaf if leaves.count(leaf) == 1 and leaf not in RESERVED_LABELS else key for key, leaf in zip(keys, leaves)}


def _natural(value: str | None) -> tuple:
    if value is None:
        return (2, 0.0, "")
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


@dataclass(frozen=True)
class RowKeys:
    """The row keys of a report (dotted, in column order) and the replicate axes added to the seed."""

    keys: tuple[str, ...]
    labels: Mapping[str, str]
    """``{key: column name}`` for :attr:`keys` and :attr:`averaged`."""
    shown: tuple[str, ...]
    """Keys the tables show: those chosen with ``--group-by``, else those with several values within a model
    size (a key constant within every model size says nothing the Size column does not), leaving out algorithm
    options that follow from the algorithm (one value per algorithm and model size, like dapo_full's resolved
    ``epsilon_high`` 0.28 against 0.2: the Algorithm column says it). The CSVs keep every key."""
    averaged: tuple[str, ...] = ()
    """``--average-over`` keys: replicate axes, like the seed."""

    def values(self, run: RunRecord) -> tuple[str | None, ...]:
        """The run's value of each row key (``None``: the run did not log it)."""
        return tuple(run.params.get(key) for key in self.keys)

    def replicate(self, run: RunRecord) -> tuple[str | None, ...]:
        """The run's replicate id: its seed, then its values of the averaged keys."""
        return (run.seed, *(run.params.get(key) for key in self.averaged))

    def describe(self, values: Sequence[str | None], keys: Sequence[str] | None = None) -> str:
        """``lam_init=1.0, learning_rate=3e-05`` for ``values`` of ``keys`` (default: the shown keys)."""
        chosen = self.shown if keys is None else keys
        by_key = dict(zip(self.keys, values))
        return ", ".join(f"{self.labels[k]}={'—' if by_key.get(k) is None else by_key[k]}" for k in chosen)


def _resolve_name(name: str, known: Sequence[str], option: str) -> str:
    """The dotted key ``name`` stands for: itself, or the one known key whose last part it is."""
    if name in known or name in SEED_KEYS or name == ALGORITHM_KEY:
        return name
    matches = [key for key in known if key.rsplit(".", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ReportInputError(f"{option} {name!r} is ambiguous: {', '.join(matches)}; give the dotted key")
    raise ReportInputError(
        f"{option} {name!r}: not a config key the reported runs logged; keys: {', '.join(known) or '(none)'} "
        "(dotted, or their last part when unique)"
    )


def _follows_from_algorithm(key: str, by_algorithm: Iterable[list[RunRecord]]) -> bool:
    """True for an algorithm option with one value per algorithm name (a preset's resolved axis, like grpo's
    ``aggregation`` against dapo's, or dapo_full's ``epsilon_high``): the Algorithm column already tells those rows
    apart, so it is no row key and ``--group-by`` need not name it."""
    return key.startswith(ALGORITHM_OPTIONS_PREFIX) and all(
        len({run.params.get(key) for run in members}) == 1 for members in by_algorithm)


def resolve_row_keys(
    runs: Sequence[RunRecord], *, group_by: Sequence[str] | None = None, average_over: Sequence[str] = (),
    key_order: Sequence[str] = (),
) -> RowKeys:
    """The :class:`RowKeys` of ``runs`` (module doc). Raises :class:`ReportInputError` for unknown, ambiguous
    or contradictory ``--group-by`` / ``--average-over`` keys, or a varying key left out of both."""
    candidates = sorted({key for run in runs for key in run.params if is_row_key_candidate(key)})
    varying = [key for key in candidates if len({run.params.get(key) for run in runs}) > 1]
    by_name: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_name.setdefault(run.algorithm, []).append(run)
    implied = {key for key in varying if _follows_from_algorithm(key, by_name.values())}
    averaged = [_resolve_name(name, candidates, "--average-over") for name in average_over]
    for key in averaged:
        if key in SEED_KEYS or key == ALGORITHM_KEY:
            raise ReportInputError(f"--average-over {key}: " + ("already a replicate axis" if key in SEED_KEYS else
                                   "the algorithm is always a row key"))
    if group_by is not None:
        chosen = [_resolve_name(name, candidates, "--group-by") for name in group_by]
        for key in chosen:
            if key in SEED_KEYS:
                raise ReportInputError(f"--group-by {key}: a seed is a replicate, never a row key; to see every run's "
                                       "value, one line per seed, add --per-seed (or read results.csv of --format csv)")
            if key in averaged:
                raise ReportInputError(f"{key} is in both --group-by and --average-over; choose one")
        keys = list(dict.fromkeys(k for k in chosen if k != ALGORITHM_KEY))
        left_out = [k for k in varying if k not in keys and k not in averaged and k != ALGORITHM_KEY and k not in implied]
        if left_out:
            raise ReportInputError(
                f"{', '.join(left_out)} differ among the reported runs but are in neither --group-by nor --average-over: "
                "a report never pools different configurations as seeds; add each to --group-by (a row per value) "
                "or to --average-over (treat it as a replicate on purpose), or narrow the selection with --filter"
            )
    else:
        keys = _ordered((k for k in varying if k != ALGORITHM_KEY and k not in averaged and k not in implied), key_order)
    labels = _labels([*keys, *averaged])
    if group_by is not None:
        shown = tuple(keys)
    else:
        by_size: dict[str, list[RunRecord]] = {}
        by_algorithm: dict[tuple[str, str], list[RunRecord]] = {}
        for run in runs:
            by_size.setdefault(run.model_size, []).append(run)
            by_algorithm.setdefault((run.model_size, run.algorithm), []).append(run)

        def varies(key: str, groups: Iterable[list[RunRecord]]) -> bool:
            return any(len({r.params.get(key) for r in members}) > 1 for members in groups)

        shown = tuple(k for k in keys if varies(k, by_size.values())
                      and (not k.startswith(ALGORITHM_OPTIONS_PREFIX) or varies(k, by_algorithm.values())))
    return RowKeys(tuple(keys), labels, shown, tuple(averaged))


def sort_key(values: Sequence[str | None]) -> tuple:
    """Rows of one algorithm sort by their key values, numbers numerically."""
    return tuple(_natural(v) for v in values)


def check_replicates(row_name: str, runs: Sequence[RunRecord], row_keys: RowKeys) -> None:
    """Raise :class:`ReportInputError` when two runs of one row share a replicate id (seed and averaged keys)."""
    seen: dict[tuple, RunRecord] = {}
    for run in runs:
        replicate = row_keys.replicate(run)
        twin = seen.get(replicate)
        if twin is not None:
            what = f"seed {run.seed}" + "".join(f", {row_keys.labels[k]}={v}" for k, v in zip(row_keys.averaged, replicate[1:]))
            raise ReportInputError(
                f"runs {twin.label} and {run.label} are the same row ({row_name}) and the same replicate ({what}): "
                "a report cannot average them as seeds. Their configs differ only in keys the report cannot see "
                "(runs logged without their config params?): remove one (mlflow runs delete), narrow the selection "
                "with --filter, or tell them apart with --group-by"
            )
        seen[replicate] = run


@dataclass(frozen=True)
class BaselineMatch:
    """The baseline row a row is compared with (its index among the baseline rows, or ``None``)."""

    index: int | None
    matched: tuple[str, ...]
    """Keys whose values had to agree."""
    unmatched: Mapping[str, str | None]
    """Algorithm options the row differs in from the baseline, with the baseline's (only) value."""
    reason: str | None = None
    """Why there is no baseline row (``index is None``)."""


def match_baseline(
    values: Sequence[str | None], baseline_values: Sequence[Sequence[str | None]], row_keys: RowKeys, baseline: str,
) -> BaselineMatch:
    """The baseline row with the same key values as ``values`` (module doc: algorithm options all baseline rows
    share are not matched)."""
    matched: list[str] = []
    unmatched: dict[str, str | None] = {}
    for position, key in enumerate(row_keys.keys):
        options = {row[position] for row in baseline_values}
        if key.startswith(ALGORITHM_OPTIONS_PREFIX) and len(options) == 1 and values[position] not in options:
            option = next(iter(options))
            if option not in (None, "None"):  # the baseline has no such option (grpo has no lam_init): nothing to say
                unmatched[key] = option
        else:
            matched.append(key)
    positions = [row_keys.keys.index(key) for key in matched]
    for index, row in enumerate(baseline_values):
        if all(row[p] == values[p] for p in positions):
            return BaselineMatch(index, tuple(matched), unmatched)
    wanted = ", ".join(f"{row_keys.labels[key]}={values[row_keys.keys.index(key)]}" for key in matched)
    return BaselineMatch(None, tuple(matched), unmatched, f"no {baseline} row with {wanted}" if wanted else f"no {baseline} row")

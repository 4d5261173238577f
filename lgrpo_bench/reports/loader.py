"""Read what a report needs from the MLflow store, in bulk; the only module of ``reports`` that does I/O.

Everything is read through the store's one reader (:class:`~lgrpo_bench.tracking.reader.StoreReader`: the SQLite
store without importing MLflow, any other through MLflow's client):

* :func:`open_store` — the reader of a tracking URI (a report never creates a store: a missing SQLite file is a
  :class:`~lgrpo_bench.tracking.reader.StoreProblem`).
* :func:`load_runs` — every train run of the selection with its tags, params, latest eval metrics and eval identity
  tags (eval metrics logged into a separate ``lgrpo.kind = eval`` run are merged into the train run their
  ``mlflow.parentRunId`` names), plus the grid parent runs.
* :func:`load_histories` — step histories of a few training metrics for many runs.
* :func:`load_problem_records` — the per-problem records artifact ``eval/<benchmark>/problems.jsonl`` of the runs
  and benchmarks given: read in place from a local artifact folder, downloaded with MLflow (in parallel threads)
  from a remote one.

A grid is its current points: with ``run_ids`` (the run ids of a grid file's current points) the selection is the
train runs of those run ids in the grid's experiments, whichever grid (or none) first ran them; how many came from
elsewhere is counted (:attr:`ReportData.from_elsewhere`). Train runs tagged with the grid's name whose run id is no
longer among them are runs of an earlier version of the grid (a value of the file was edited since they ran): they
are left out and counted (:attr:`ReportData.earlier_versions`), or kept with ``all_versions=True``, where the row
keys tell them apart by the config values that differ.

Which runs count: ``lgrpo.kind`` = ``train`` (eval runs are merged into them) with ``lgrpo.state`` in
:data:`REPORTED_STATES` (``done``, or ``trained`` with whatever evaluation is logged so far); running and
failed runs are left out and counted in :attr:`ReportData.skipped`. Two MLflow runs with the same
``lgrpo.run_id`` (the run's config hash) keep the newest. When a train run has several evaluations of a
benchmark (itself and eval children), the newest run's values win.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lgrpo_bench.tracking import schema as t
from lgrpo_bench.tracking.artifacts import local_artifact_root
from lgrpo_bench.tracking.reader import StoredRun, StoreReader

__all__ = [
    "HOST_TAG_PREFIX",
    "REPORTED_STATES",
    "ReportData",
    "ReportInputError",
    "RunRecord",
    "Store",
    "load_histories",
    "load_problem_records",
    "load_runs",
    "open_store",
    "resolve_experiment_ids",
]

REPORTED_STATES: tuple[str, ...] = (t.STATE_DONE, t.STATE_TRAINED)
_logger = logging.getLogger(__name__)
_DOWNLOAD_THREADS = 8
_PROGRESS_BAR_VARIABLE = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
HOST_TAG_PREFIX = t.TAG_HOST_CPU.rsplit(".", 1)[0] + "."
"""``lgrpo.host.``: every tag of :mod:`~lgrpo_bench.tracking.schema` named ``TAG_HOST_*`` starts with it."""
NO_GRID = "(no grid)"
"""How :attr:`ReportData.from_elsewhere` names runs made outside any grid."""

Store = StoreReader
"""What :func:`open_store` returns and the ``load_*`` functions take."""


class ReportInputError(ValueError):
    """The selection is empty, unknown or cannot be reported honestly; the message says what to do."""


@dataclass
class RunRecord:
    """One training run as a report sees it (values are fractions as logged; tags are strings)."""

    mlflow_run_id: str
    run_id: str
    algorithm: str
    model: str
    model_size: str
    seed: str
    state: str
    grid: str | None
    experiment_id: str
    start_time: int
    eval_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    """``{benchmark: {metric: latest value}}`` from ``eval/<benchmark>/<metric>``."""
    eval_identity: dict[str, dict[str, str]] = field(default_factory=dict)
    """``{benchmark: {field: value}}`` from the tags ``lgrpo.eval.<benchmark>.<field>``."""
    eval_source: dict[str, str] = field(default_factory=dict)
    """``{benchmark: MLflow run id}`` of the run that holds the benchmark's metrics and records artifact."""
    artifact_uris: dict[str, str] = field(default_factory=dict)
    """``{MLflow run id: artifact root URI}`` of the run and of the eval runs merged into it."""
    train_metrics: dict[str, float] = field(default_factory=dict)
    """Latest value of every ``train/*`` metric."""
    params: dict[str, str] = field(default_factory=dict)
    """Every param the run logged: its flattened config (:func:`~lgrpo_bench.tracking.schema.flatten_params`) and
    ``run_id``. The row keys of a report come from here (:mod:`.keys`)."""
    tags: dict[str, str] = field(default_factory=dict)
    """Every tag of the train run (provenance, warm start, λ rate limit, ...)."""

    @property
    def label(self) -> str:
        """How messages name the run: ``<lgrpo run id> (<algorithm>, seed <seed>, MLflow <id>)``."""
        return f"{self.run_id} ({self.algorithm}, seed {self.seed}, MLflow {self.mlflow_run_id})"

    @property
    def hardware(self) -> str | None:
        """The tag ``lgrpo.hardware`` (``cpu:AMD EPYC 7B13:AVX2``); ``None`` for runs logged before it existed."""
        return self.tags.get(t.TAG_HARDWARE)

    @property
    def host(self) -> dict[str, str]:
        """``{name: value}`` of the ``lgrpo.host.*`` tags, named by their last part (``cpu``, ``torch_threads``)."""
        return {key[len(HOST_TAG_PREFIX):]: value for key, value in self.tags.items() if key.startswith(HOST_TAG_PREFIX)}

    @property
    def warm_start_out_of_band(self) -> bool:
        """The run rests on a warm start outside its preset's accuracy band (``lgrpo.warm_start.in_band = false``)."""
        return self.tags.get(t.TAG_WARM_START_IN_BAND, "").strip().lower() == "false"

    @property
    def lambda_rate_limited_frac(self) -> float | None:
        """The tag ``lgrpo.lambda.rate_limited_frac`` (share of steps λ moved at its optimizer's rate limit)."""
        try:
            return float(self.tags[t.TAG_LAMBDA_RATE_LIMITED_FRAC])
        except (KeyError, ValueError):
            return None


@dataclass
class ReportData:
    """The runs of a report and where they came from."""

    runs: list[RunRecord]
    grid_runs: dict[str, str]
    """``{MLflow run id: grid name}`` of the ``lgrpo.kind = grid`` parent runs in the selection."""
    skipped: dict[str, int]
    """``{state: count}`` of train runs left out (running, failed)."""
    selection: str
    """Human description of the selection (experiment names, filter)."""
    title: str = ""
    """What the selection is, for a page title: ``grid quickstart`` or ``experiment(s) paper``."""
    earlier_versions: list[RunRecord] = field(default_factory=list)
    """With ``all_versions``: the finished train runs of the grid whose run id is not among the ``run_ids`` asked for
    (runs of earlier versions of the grid file), also in :attr:`runs`."""
    grid_artifact_uris: dict[str, str] = field(default_factory=dict)
    """``{MLflow run id: artifact root}`` of the grid parent runs (where a report logs its plots)."""
    grid: str | None = None
    """The grid the selection is (``report --grid``), when it is one."""
    earlier_count: int = 0
    """How many run ids of earlier versions of the grid have finished train runs (also when not loaded)."""
    all_versions: bool = False
    from_elsewhere: dict[str, int] = field(default_factory=dict)
    """``{grid name or "(no grid)": runs}``: reported runs of the grid's current points that another grid (or a run
    outside any grid) made first; empty without a grid."""
    location: str = ""
    """Where the reported runs are, in words: ``grid quickstart in experiment quickstart``, ``experiments a, b``,
    ``experiment paper, matching the filter <filter>`` (the experiments that hold them, not those searched)."""

    @property
    def grid_parents(self) -> list[str]:
        """The parent runs of the grid the selection is (``report --grid``), else of the one grid every reported run
        belongs to (none when runs span grids or none)."""
        name = self.grid
        if name is None:
            grids = {run.grid for run in self.runs}
            if len(grids) != 1 or None in grids:
                return []
            name = grids.pop()
        return [run_id for run_id, grid in self.grid_runs.items() if grid == name]


def open_store(tracking) -> Store:
    """The reader of ``tracking``: a reader as it is, an ``MlflowClient`` read through MLflow
    (:class:`~lgrpo_bench.tracking.reader.ClientReader`), a URI or ``None`` (the default store) through
    :func:`~lgrpo_bench.tracking.reader.open_reader`. Never creates a store."""
    from lgrpo_bench.tracking.reader import ClientReader, open_reader

    if isinstance(tracking, StoreReader):
        return tracking
    if tracking is not None and not isinstance(tracking, str):
        return ClientReader(tracking.tracking_uri, client=tracking)
    return open_reader(tracking)


def resolve_experiment_ids(store: Store, names: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(ids, names) of the named active experiments, or of every active experiment when ``names`` is empty.

    Raises :class:`ReportInputError` naming each experiment that does not exist or is deleted.
    """
    store = open_store(store)
    experiments = store.experiments()
    active = {e.name: e.experiment_id for e in experiments}
    if names:
        missing = [name for name in names if name not in active]
        if missing:
            raise ReportInputError(
                f"no experiment named {', '.join(repr(m) for m in missing)} in {store.uri}; "
                f"experiments there: {', '.join(sorted(active)) or '(none)'}"
            )
        return [active[name] for name in names], list(names)
    return [e.experiment_id for e in experiments], [e.name for e in experiments]


def _eval_parts(run: StoredRun) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, str]]]:
    metrics: dict[str, dict[str, float]] = {}
    for name, value in run.data.metrics.items():
        if name.startswith(t.EVAL_PREFIX):
            try:
                benchmark, metric = t.parse_eval_metric(name)
            except ValueError:
                continue
            if benchmark != t.TRAINER_EVAL_BENCHMARK:
                metrics.setdefault(benchmark, {})[metric] = float(value)
    identity: dict[str, dict[str, str]] = {}
    for key, value in run.data.tags.items():
        if key.startswith(t.EVAL_TAG_PREFIX):
            benchmark, _, field_name = key[len(t.EVAL_TAG_PREFIX):].rpartition(".")
            if benchmark and field_name in t.EVAL_IDENTITY_FIELDS:
                identity.setdefault(benchmark, {})[field_name] = value
    return metrics, identity


def load_runs(
    store: Store,
    experiment_names: Sequence[str] | None = None,
    *,
    grid: str | None = None,
    filter_string: str | None = None,
    tags: Mapping[str, str] | None = None,
    run_ids: Collection[str] | None = None,
    all_versions: bool = False,
) -> ReportData:
    """The reportable train runs of the selection, with eval runs merged in (see the module doc).

    Args:
        experiment_names: experiments to read; ``None``/empty = every active experiment of the store.
        grid: the grid's name. Without ``run_ids``: keep runs whose ``lgrpo.grid`` tag is this name (or that are
            members of it, ``lgrpo.in_grid.<grid>``). With ``run_ids``: names the grid whose earlier versions and
            parent runs are found, and from which others' runs are told apart.
        tags: keep runs with each of these tag values (``{"lgrpo.model": "tiny-s"}``); eval runs merged into a
            train run must carry them too.
        filter_string: an MLflow search filter AND-ed in (``"tags.`lgrpo.model_size` = '0.5B'"``).
        run_ids: the current run ids of the grid file (``lgrpo.run_id`` values): the selection is their train runs,
            whichever grid made them; other finished train runs tagged with ``grid`` are earlier versions, left out
            (:attr:`ReportData.earlier_versions`) unless ``all_versions``.
    Raises:
        ReportInputError: unknown experiment, a filter MLflow rejects, or no reportable run.
    """
    store = open_store(store)
    ids, names = resolve_experiment_ids(store, experiment_names)
    wanted_tags = dict(tags or {})
    clauses = [f"tags.`{key}` = {_quote(value)}" for key, value in wanted_tags.items()]
    if grid is not None:
        clauses.append(f"grid {grid}" if run_ids is not None else f"tags.`{t.TAG_GRID}` = {_quote(grid)}")
    if filter_string and filter_string.strip():
        clauses.append(filter_string.strip())
    where = " AND ".join(clauses)
    described = f"experiment(s) {', '.join(names) or '(none)'}" + (f" where {where}" if where else "")
    title = f"grid {grid}" if grid is not None else f"experiment{'s' if len(names) != 1 else ''} {', '.join(names) or '(none)'}"
    if not ids:
        raise ReportInputError(f"{store.uri} has no experiment to report")
    try:  # oldest first: a newer run with the same lgrpo.run_id replaces an older one
        found = list(reversed(store.runs(ids, tag_equals=wanted_tags, filter_string=filter_string, params=True)))
    except ValueError as error:  # a filter MLflow rejects
        raise ReportInputError(str(error)) from None

    def in_selection(run_tags: Mapping[str, str]) -> bool:
        if grid is None:
            return True
        member = run_tags.get(t.TAG_GRID) == grid or run_tags.get(t.grid_member_tag(grid)) == "true"
        if run_ids is None:
            return member
        return run_tags.get(t.TAG_RUN_ID) in run_ids or (all_versions and run_tags.get(t.TAG_GRID) == grid)

    trains: dict[str, RunRecord] = {}
    grid_runs: dict[str, str] = {}
    grid_artifact_uris: dict[str, str] = {}
    skipped: dict[str, int] = {}
    evals: list[StoredRun] = []
    earlier_ids: set[str] = set()
    for run in found:
        run_tags = run.data.tags
        kind = run_tags.get(t.TAG_KIND)
        if kind == t.KIND_GRID:
            if grid is None or run_tags.get(t.TAG_GRID) == grid:
                grid_runs[run.info.run_id] = run_tags.get(t.TAG_GRID, "")
                grid_artifact_uris[run.info.run_id] = run.info.artifact_uri
            continue
        if kind == t.KIND_EVAL:
            evals.append(run)
            continue
        if kind != t.KIND_TRAIN or not in_selection(run_tags):
            continue
        state = run_tags.get(t.TAG_STATE, "")
        rid = run_tags.get(t.TAG_RUN_ID, run.info.run_id)
        current = run_ids is None or rid in run_ids
        if state not in REPORTED_STATES:
            if current:
                skipped[state or "unknown"] = skipped.get(state or "unknown", 0) + 1
            continue
        if not current:
            earlier_ids.add(rid)
        metrics, identity = _eval_parts(run)
        record = RunRecord(
            mlflow_run_id=run.info.run_id,
            run_id=rid,
            algorithm=run_tags.get(t.TAG_ALGORITHM, "?"),
            model=run_tags.get(t.TAG_MODEL, "?"),
            model_size=run_tags.get(t.TAG_MODEL_SIZE) or run_tags.get(t.TAG_MODEL, "?"),
            seed=run_tags.get(t.TAG_SEED, "?"),
            state=state,
            grid=run_tags.get(t.TAG_GRID),
            experiment_id=run.info.experiment_id,
            start_time=int(run.info.start_time or 0),
            eval_metrics=metrics,
            eval_identity=identity,
            eval_source={benchmark: run.info.run_id for benchmark in metrics},
            artifact_uris={run.info.run_id: run.info.artifact_uri},
            train_metrics={k: float(v) for k, v in run.data.metrics.items() if k.startswith(t.TRAIN_PREFIX)},
            params=dict(run.data.params),
            tags=dict(run_tags),
        )
        trains[record.run_id] = record
    if run_ids is not None and grid is not None and not all_versions:  # earlier versions: counted, not shown
        for run in found:
            run_tags = run.data.tags
            rid = run_tags.get(t.TAG_RUN_ID, run.info.run_id)
            if (run_tags.get(t.TAG_KIND) == t.KIND_TRAIN and run_tags.get(t.TAG_GRID) == grid and rid not in run_ids
                    and run_tags.get(t.TAG_STATE) in REPORTED_STATES):
                earlier_ids.add(rid)
    by_mlflow_train = {record.mlflow_run_id: record for record in trains.values()}
    for run in evals:  # oldest first, so the newest evaluation of a benchmark wins
        parent = by_mlflow_train.get(run.data.tags.get(t.TAG_PARENT_RUN_ID, ""))
        if parent is None:
            continue
        metrics, identity = _eval_parts(run)
        for benchmark, values in metrics.items():
            parent.eval_metrics[benchmark] = values
            parent.eval_identity[benchmark] = identity.get(benchmark, {})
            parent.eval_source[benchmark] = run.info.run_id
        parent.artifact_uris[run.info.run_id] = run.info.artifact_uri
    order = lambda r: (r.model_size, r.algorithm, _seed_key(r.seed), r.start_time)  # noqa: E731
    earlier = sorted((r for r in trains.values() if r.run_id in earlier_ids), key=order)  # loaded with all_versions
    runs = sorted((r for r in trains.values() if all_versions or run_ids is None or r.run_id in run_ids), key=order)
    from_elsewhere: dict[str, int] = {}
    if grid is not None and run_ids is not None:
        for record in runs:
            if record.run_id in run_ids and record.grid != grid:
                name = record.grid or NO_GRID
                from_elsewhere[name] = from_elsewhere.get(name, 0) + 1
    if not runs:
        left_out = ", ".join(f"{count} {state}" for state, count in sorted(skipped.items()))
        which = "no finished train run" + (" of the grid file's current points" if run_ids is not None else "")
        raise ReportInputError(
            f"{which} in {described} ({store.uri})"
            + (f"; left out: {left_out}" if left_out else "")
            + (f"; {len(earlier_ids)} runs of earlier versions of this grid (run ids no longer in the grid file): "
               "--all-versions includes them" if earlier_ids else "; check the experiment name (--experiment), the grid name or the filter")
        )
    return ReportData(runs=runs, grid_runs=grid_runs, grid_artifact_uris=grid_artifact_uris, grid=grid,
                      skipped=skipped, selection=described, title=title,
                      location=_location(runs, dict(zip(ids, names)), grid, wanted_tags, filter_string),
                      earlier_versions=earlier, all_versions=all_versions,
                      from_elsewhere=from_elsewhere, earlier_count=len(earlier_ids))


def _location(runs: Sequence[RunRecord], names: Mapping[str, str], grid: str | None, tags: Mapping[str, str],
              filter_string: str | None) -> str:
    """:attr:`ReportData.location`: the grid, the experiments that hold ``runs``, the tag values and filter asked for."""
    held = sorted({names.get(run.experiment_id, run.experiment_id) for run in runs})
    text = (f"grid {grid} in " if grid is not None else "") + f"experiment{'s' if len(held) != 1 else ''} {', '.join(held)}"
    if tags:
        text += " with " + ", ".join(f"{key} = {value}" for key, value in tags.items())
    if filter_string and filter_string.strip():
        text += f", matching the filter {filter_string.strip()}"
    return text


def _seed_key(seed: str) -> tuple[int, str]:
    return (int(seed), seed) if seed.lstrip("-").isdigit() else (1 << 62, seed)


def _quote(value: str) -> str:
    from lgrpo_bench.tracking.store import quote_filter_value

    try:
        return quote_filter_value(value)
    except ValueError as error:
        raise ReportInputError(str(error)) from None


def load_histories(store: Store, run_ids: Sequence[str], metric_keys: Iterable[str]
                   ) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """``{metric: {mlflow run id: (steps, values)}}`` sorted by step, for runs that logged the metric
    (:meth:`~lgrpo_bench.tracking.reader.StoreReader.metric_histories`). A step logged twice (a resumed run) keeps its
    latest value."""
    keys = list(dict.fromkeys(metric_keys))
    raw = open_store(store).metric_histories(list(run_ids), keys)
    histories: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for key in keys:
        per_run = {}
        for run_id, values in raw.get(key, {}).items():
            latest: dict[int, float] = {}
            for step, _, value in sorted(values, key=lambda point: (point[0], point[1])):
                latest[int(step)] = float(value)
            steps = sorted(latest)
            per_run[run_id] = (steps, [latest[s] for s in steps])
        histories[key] = per_run
    return histories


def load_problem_records(
    store: Store, requests: Iterable[tuple[str, str]], artifact_uris: Mapping[str, str] | None = None
) -> dict[tuple[str, str], list[dict] | None]:
    """``{(mlflow run id, benchmark): records or None}`` for each requested pair.

    Reads the artifact ``eval/<benchmark>/problems.jsonl`` (:func:`~lgrpo_bench.tracking.schema.eval_records_artifact_dir`);
    a run without it gives ``None`` (its statistics show as missing). With ``artifact_uris`` (``{run id:
    artifact root}``, as :attr:`RunRecord.artifact_uris` holds them) the files are read from the artifact
    store directly, without one tracking-store query per file; local artifact folders are read in place (no MLflow
    import), remote ones downloaded with MLflow.
    """
    wanted = list(dict.fromkeys(requests))
    if not wanted:
        return {}
    store = open_store(store)
    roots = artifact_uris or {}
    with tempfile.TemporaryDirectory(prefix="lgrpo-report-") as scratch:

        def fetch(item: tuple[str, str]) -> list[dict] | None:
            run_id, benchmark = item
            path = f"{t.eval_records_artifact_dir(benchmark)}/{t.EVAL_RECORDS_FILENAME}"
            local_root = local_artifact_root(roots.get(run_id))
            if local_root is not None:  # a local artifact store: read in place, no copy
                return _read_jsonl(local_root / path) if (local_root / path).is_file() else None
            target = Path(scratch) / f"{run_id}-{abs(hash(benchmark))}"
            target.mkdir()
            try:
                if run_id in roots:
                    from mlflow.artifacts import download_artifacts

                    local = download_artifacts(artifact_uri=f"{roots[run_id].rstrip('/')}/{path}", dst_path=str(target))
                else:
                    local = store.mlflow_client().download_artifacts(run_id, path, str(target))
            except Exception:  # noqa: BLE001 - a missing artifact is reported as missing data
                return None
            return _read_jsonl(Path(local)) if os.path.isfile(local) else None

        quiet = os.environ.get(_PROGRESS_BAR_VARIABLE)
        os.environ[_PROGRESS_BAR_VARIABLE] = "false"  # one progress bar per artifact would flood the terminal
        try:
            with ThreadPoolExecutor(max_workers=_DOWNLOAD_THREADS) as pool:
                return dict(zip(wanted, pool.map(fetch, wanted)))
        finally:
            if quiet is None:
                os.environ.pop(_PROGRESS_BAR_VARIABLE, None)
            else:
                os.environ[_PROGRESS_BAR_VARIABLE] = quiet


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]

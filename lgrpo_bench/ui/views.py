"""The MLflow UI: its command, started under a supervisor, and the links worth printing for a store.

* :func:`ui_command` / :func:`start_ui` — the ``mlflow ui`` command, bound to 127.0.0.1 by default (the UI
  has no authentication; binding to a public interface exposes every run to the network), started under a
  supervisor so that stopping it stops uvicorn and its workers too (:mod:`lgrpo_bench.ui.serve`).
* :func:`ui_base_url` / :func:`experiment_runs_route` — where to browse; :func:`grid_views` lists the saved grid views
  (written by :func:`lgrpo_bench.tracking.store.set_grid_view`) and :func:`ui_links` the pages of a grid or experiment.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from lgrpo_bench.tracking.store import open_client, set_grid_view

if TYPE_CHECKING:  # mlflow is imported lazily: importing it costs about a second
    import subprocess

    from mlflow import MlflowClient

__all__ = ["UI_SERVER_ENV", "experiment_runs_route", "grid_views", "start_ui", "ui_base_url", "ui_command", "ui_links"]


UI_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
"""Environment of ``mlflow ui`` unless the caller's sets these: no GenAI job runner (an extra process lgrpo-bench
never uses, started with the server; its jobs would leave the server's process group), no usage telemetry (its
exit hook waits seconds on a network call, which delays stopping the UI)."""


def ui_command(uri: str, host: str = "127.0.0.1", port: int = 5000, workers: int | None = None) -> list[str]:
    """The argv of ``mlflow ui`` for the store at ``uri``, run with this interpreter's MLflow.

    ``host`` defaults to 127.0.0.1: the UI has no authentication, so only bind a public interface
    (``0.0.0.0``) on a trusted network. ``workers``: uvicorn worker processes (None: MLflow's default, 4).
    """
    if not 0 < int(port) < 65536:
        raise ValueError(f"port must be in 1..65535, got {port}")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    if workers is not None:
        if int(workers) < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        command += ["--workers", str(int(workers))]
    return command + ["--host", host, "--port", str(int(port))]


def start_ui(uri: str, host: str = "127.0.0.1", port: int = 5000, *, workers: int | None = None,
             stdout=None, stderr=None) -> subprocess.Popen:
    """Start ``mlflow ui`` (see :func:`ui_command`) under a supervisor and return the supervisor's process.

    ``process.terminate()`` stops the UI and every process it started (uvicorn and its workers) within a few
    seconds, and so does the death of the calling process, even by SIGKILL (see
    :mod:`lgrpo_bench.ui.serve`; :func:`lgrpo_bench.ui.serve.serve_foreground` runs it in the
    foreground). ``stdout``/``stderr``: where the server's output goes (default: ours). Browse to
    ``http://<host>:<port>``.
    """
    from lgrpo_bench.ui.serve import start_supervised

    if host not in ("127.0.0.1", "localhost", "::1"):
        import logging

        logging.getLogger(__name__).warning(
            "starting the MLflow UI on %s: it has no authentication, anyone who can reach this host can read "
            "(and delete) runs. Use host=127.0.0.1 and an SSH tunnel unless the network is trusted.",
            host,
        )
    env = {**UI_SERVER_ENV, **os.environ}
    return start_supervised(ui_command(uri, host=host, port=port, workers=workers), env=env, stdout=stdout, stderr=stderr)


def ui_base_url(host: str, port: int) -> str:
    """``http://<host>:<port>`` (IPv6 literals in brackets); ``0.0.0.0``/``::`` are shown as this machine's loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def experiment_runs_route(experiment_id: str, share_key: str | None = None) -> str:
    """The UI route (after the base URL) of an experiment's runs table in the "Model training" view.

    ``workflowType=machine_learning`` overrides the UI's remembered GenAI/Model-training switch for this page;
    ``viewStateShareKey`` opens a saved view (see :func:`lgrpo_bench.tracking.store.set_grid_view`).
    """
    query = {"workflowType": "machine_learning"}
    if share_key:
        query["viewStateShareKey"] = share_key
    return f"#/experiments/{urllib.parse.quote(str(experiment_id))}/runs?{urllib.parse.urlencode(query)}"


def _views_of(experiments: Sequence[tuple[str, str]], tags: dict[str, dict[str, str]]) -> list[tuple[str, str, str]]:
    from lgrpo_bench.tracking import schema as t

    prefix = t.SHARED_VIEW_TAG_PREFIX + t.GRID_VIEW_KEY_PREFIX
    return [(key[len(prefix):], name, experiment_runs_route(experiment_id, key[len(t.SHARED_VIEW_TAG_PREFIX):]))
            for experiment_id, name in experiments for key in sorted(tags.get(experiment_id, {})) if key.startswith(prefix)]


def grid_views(client: MlflowClient) -> list[tuple[str, str, str]]:
    """(grid name, experiment name, route) of every saved grid view in the store's active experiments."""
    found = client.search_experiments()
    return _views_of([(e.experiment_id, e.name) for e in found], {e.experiment_id: dict(e.tags) for e in found})


def ui_links(uri: str, grid: str | None = None, experiment: str | None = None, *,
             is_config_key: Callable[[str], bool] = lambda key: True) -> list[tuple[str, str]]:
    """(label, route) of the UI pages worth printing for the store at ``uri``; routes go after the UI's base URL.

    * ``grid``: the grid's view in each experiment holding its parent run (in ``experiment`` only, when given). A
      grid logged before views existed gets one now (:func:`~lgrpo_bench.tracking.store.set_grid_view`, columns from
      its training runs: the ``eval/*/acc`` metrics they logged, grouped by the params that vary among them and pass
      ``is_config_key``);
    * else ``experiment``: its runs table;
    * else every saved grid view.

    The store is read through its reader (:func:`lgrpo_bench.tracking.reader.open_reader`: a SQLite store without
    importing MLflow); MLflow is used to write a missing view or membership tags. Raises ``ValueError`` naming what the store has when
    ``grid`` or ``experiment`` is not there (or the SQLite file does not exist).
    """

    from lgrpo_bench.tracking.reader import open_reader

    reader = open_reader(uri, must_exist=False)
    if reader is None:
        if grid or experiment:
            raise ValueError(f"no store at {uri}: nothing has run yet (choose the store with --tracking-uri)")
        return []
    with reader:
        return _ui_links(reader, uri, grid, experiment, is_config_key)


def _ui_links(reader, uri: str, grid: str | None, experiment: str | None, is_config_key: Callable[[str], bool]):
    from lgrpo_bench.tracking import schema as t

    found = reader.experiments()
    experiments = [(e.experiment_id, e.name) for e in found]
    names = {name: experiment_id for experiment_id, name in experiments}
    if experiment is not None and experiment not in names:
        raise ValueError(f"--experiment {experiment!r}: no such experiment in {uri} "
                         f"(experiments: {', '.join(sorted(names)) or 'none'})")
    views = _views_of(experiments, {e.experiment_id: dict(e.tags) for e in found})
    if grid is None:
        if experiment is not None:
            return [(f"experiment {experiment}", experiment_runs_route(names[experiment]))]
        return [(f"grid {name} ({where})", route) for name, where, route in views]
    searched = [names[experiment]] if experiment is not None else [experiment_id for experiment_id, _ in experiments]
    parents = reader.runs(searched, tag_equals={t.TAG_GRID: grid, t.TAG_KIND: t.KIND_GRID}, metrics=False) if searched else []
    holding = list(dict.fromkeys(run.info.experiment_id for run in parents))
    if not holding:
        raise ValueError(f"--grid {grid!r}: no grid of that name in {uri}" + (f" (experiment {experiment!r})" if experiment else "")
                         + f"; grids with a view there: {', '.join(sorted({v[0] for v in views})) or 'none'} "
                         "(`lgrpo-bench status` lists every grid)")
    saved = {(name, where): route for name, where, route in views}
    by_id = dict(experiments)
    links = []
    member = t.grid_member_tag(grid)
    for experiment_id in holding:
        route = saved.get((grid, by_id[experiment_id]))
        runs = reader.runs([experiment_id], tag_equals={t.TAG_KIND: t.KIND_TRAIN}, params=route is None)
        untagged = [run for run in runs if run.data.tags.get(t.TAG_GRID) == grid and run.data.tags.get(member) != "true"]
        if untagged:  # runs of a grid that ran before membership tags: tag them, or the view would miss them
            client = open_client(uri)
            for run in untagged:
                client.set_tag(run.info.run_id, member, "true")
        if route is None:
            ours = [run for run in runs if run.data.tags.get(member) == "true" or run.data.tags.get(t.TAG_GRID) == grid]
            metrics = sorted({key for run in ours for key in run.data.metrics
                              if key.startswith(t.EVAL_PREFIX) and key.endswith("/acc")})
            keys = sorted({key for run in ours for key in run.data.params if is_config_key(key)})
            varying = [key for key in keys if len({run.data.params.get(key) for run in ours}) > 1]
            groups = list(dict.fromkeys(tuple(run.data.params.get(key, "") for key in varying) if varying
                                        else (run.data.tags.get(t.TAG_ALGORITHM, ""),) for run in ours))
            route = experiment_runs_route(experiment_id, set_grid_view(
                open_client(uri), experiment_id, grid, metrics=metrics, group_by=varying, groups=groups,
                run_names=[run.data.tags.get("mlflow.runName", "") for run in ours]))
        links.append((f"grid {grid} ({by_id[experiment_id]})", route))
    return links

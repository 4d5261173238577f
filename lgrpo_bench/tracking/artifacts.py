"""Artifacts of a run: read and written in place when the run's artifact root is a local folder, through MLflow else.

MLflow's local artifact store (``file://…`` or a plain path, the default of a SQLite store) is a folder per run:
logging an artifact copies the file to ``<artifact root>/<artifact path>/<name>``, and reading it is reading that file
(``mlflow.store.artifact.local_artifact_repo``). A report that reads per-problem records and logs its plots would
otherwise import MLflow and open its store for that alone (3 s of a 5 s report on a small CPU). For any other root (a
tracking server's ``mlflow-artifacts:``, S3, …) MLflow's client does it. ``tests/test_reports_outputs.py`` checks
that MLflow lists and downloads what :func:`log_files` wrote, so a change of MLflow's layout fails a test.
"""

from __future__ import annotations

import shutil
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["local_artifact_root", "log_files"]


def local_artifact_root(uri: str | None) -> Path | None:
    """The folder of a ``file://`` (or scheme-less) artifact root; None for remote stores."""
    if not uri:
        return None
    parts = urllib.parse.urlparse(uri)
    if parts.scheme not in ("", "file") or (parts.scheme == "file" and parts.netloc not in ("", "localhost")):
        return None
    return Path(urllib.parse.unquote(parts.path))


def log_files(mlflow_run_id: str, artifact_uri: str | None, files: Sequence[Path], artifact_path: str,
              client: Callable[[], object]) -> None:
    """Log ``files`` under ``artifact_path`` of run ``mlflow_run_id`` whose artifact root is ``artifact_uri``: copied
    in place when the root is local, else with ``client()`` (an ``MlflowClient``, made only when needed)."""
    root = local_artifact_root(artifact_uri)
    if root is None:
        writer = client()
        for path in files:
            writer.log_artifact(mlflow_run_id, str(path), artifact_path)
        return
    target = root / artifact_path
    target.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copyfile(path, target / Path(path).name)

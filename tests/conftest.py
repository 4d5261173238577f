"""Shared fixtures: tiny models built in the test session (never downloaded), offline environment."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Collection imports torch, transformers, TRL, MLflow, lm-eval and every test module (~650,000 objects kept for the
# session): the cyclic collector is off while they are created and they are then frozen out of its reach, as the warm
# server does with its imports (lgrpo_bench.procs.imports_kept_out_of_gc). Every later collection walks only what the
# tests made. Measured on the fast lane (2-core EPYC): 255-263 CPU-s without, 224-233 with (docs/measurements.md).
gc.disable()


def pytest_configure(config):
    if getattr(config.option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        gc.enable()  # the xdist controller collects nothing: its workers do


def pytest_collection_finish(session):
    gc.freeze()
    gc.enable()


_SESSION_ENVIRON: dict[str, str] = {}
"""The environment every test starts in (taken at the first test; the shared warm server's socket added once it runs)."""


@pytest.fixture(autouse=True)
def _environment_as_the_session_began():
    """Each test ends with the environment the session began with. In-process commands set their library defaults
    (``MLFLOW_LOGGING_LEVEL``, …) and imports add variables of their own (huggingface_hub's ``HF_XET_HIGH_PERFORMANCE``,
    ``KMP_*``): left behind, they reach every later test's commands, whose import-time environment would then differ
    from the shared warm server's (and from a test run in another order)."""
    if not _SESSION_ENVIRON:
        _SESSION_ENVIRON.update(os.environ)
    yield
    if os.environ != _SESSION_ENVIRON:
        os.environ.clear()
        os.environ.update(_SESSION_ENVIRON)


@pytest.fixture(scope="session")
def shared_warm_server():
    """One warm server per test process (:mod:`lgrpo_bench.runs.server`), named in ``$LGRPO_WARM_SERVER`` for every
    command the tests start: each local grid forks its runs there instead of importing torch, transformers, TRL,
    lm-eval and MLflow in a server of its own (~5 CPU-s per ``lgrpo-bench run``; 109 grids per test run). Started by
    the first end-to-end test, stopped with the session (and with this process: ``--exit-with``). A developer's own
    ``$LGRPO_WARM_SERVER`` is used as it is."""
    from lgrpo_bench.runs.server import SERVER_ENV
    from shared_server import start_shared_server

    if os.environ.get(SERVER_ENV):
        yield os.environ[SERVER_ENV]
        return
    if not _SESSION_ENVIRON:
        _SESSION_ENVIRON.update(os.environ)
    server = start_shared_server(dict(_SESSION_ENVIRON))
    os.environ[SERVER_ENV] = _SESSION_ENVIRON[SERVER_ENV] = server.path
    try:
        yield server.path
    finally:
        os.environ.pop(SERVER_ENV, None)
        _SESSION_ENVIRON.pop(SERVER_ENV, None)
        server.stop()


@pytest.fixture(autouse=True)
def _end_to_end_tests_fork_from_the_shared_warm_server(request):
    """End-to-end tests start the shared warm server (the fast lane, with few grids, never pays its imports); once it
    runs, every later test's commands use it too."""
    if request.node.get_closest_marker("e2e"):
        request.getfixturevalue("shared_warm_server")


REPO_ROOT = Path(__file__).resolve().parent.parent
#: Real benchmark copies (never copied into the repo); CI points LGRPO_DATA_DIR here.
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "math"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a test module: tiny models are chains of tiny ops, and two threads on a shared 2-core
    machine spin against each other. Modules that train tiny models use it (``pytestmark``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny models' tokenizer (built here, never downloaded)."""
    from lgrpo_bench.models.tokenizer import make_tokenizer

    return make_tokenizer()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("LGRPO_DATA_DIR", DEFAULT_DATA_DIR))
    if not path.is_dir():
        pytest.skip(f"benchmark data folder {path} not found (set LGRPO_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A model cache private to the test session and shared by its xdist workers: each warm start is built once per
    ``pytest`` run (``build_tiny`` serialises builders of one key on a file lock and the others reuse the build)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # <pytest-N>/popen-gwK: the session's folder is the parent
        base = base.parent
    folder = base / "tiny-cache"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def warm_tiny(tiny_cache):
    """tiny-s after a short warm start: emits EOS at varying lengths (enough for mechanics, not quality)."""
    from lgrpo_bench.models.tiny import build_tiny

    return build_tiny("tiny-s", cache_dir=tiny_cache, seed=0, sft_steps=120)


E2E_MARKERS = ("slow", "cluster")
"""Tests marked with these are end-to-end too: ``python -m pytest -m "not e2e"`` (the fast lane) leaves them out."""


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.get_closest_marker(name) for name in E2E_MARKERS) and not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.e2e)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Longest first: xdist deals out the grouped tests first (largest groups first), then single tests in this
        # order; the end-to-end ones (seconds to a minute each) ahead of the unit tests (milliseconds) leave no long
        # test to start when the other worker is about to finish. Every worker sorts the same way (xdist requires
        # identical collections); a run in one process (-n 0) keeps the files' order.
        items.sort(key=lambda item: item.get_closest_marker("e2e") is None)

"""The shape of the package, checked by reading its source: one owner per concern, imports pointing one way.

* ``lgrpo.state`` is written only by :mod:`lgrpo_bench.tracking.record` (the run record's state machine);
* every ``lgrpo.*`` tag key is spelled only in :mod:`lgrpo_bench.tracking.schema`;
* every run-folder name (``config.yaml``, ``run.log``, ``checkpoint-N``, ...) only in the run record (the schema
  may name MLflow artifacts that happen to share a name);
* the packages form layers (ARCHITECTURE.md): a module imports only packages of lower layers and its own
  package, at the top of the file or inside a function alike; ``config`` imports nothing of ours;
* the store has one reader: ``sqlite3`` is imported by :mod:`lgrpo_bench.tracking.reader` only, and MLflow's private
  client (``_tracking_client``) is used nowhere;
* a training run is created (``lgrpo.kind = train``) only by :mod:`lgrpo_bench.runs.tracked`, and a run is looked up
  by its run id (``lgrpo.run_id``) only through :func:`lgrpo_bench.tracking.reader.train_runs_by_run_id`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lgrpo_bench"
RECORD = PACKAGE / "tracking" / "record.py"
READER = PACKAGE / "tracking" / "reader.py"
TRACKED = PACKAGE / "runs" / "tracked.py"
SCHEMA = PACKAGE / "tracking" / "schema.py"

LAYERS: dict[str, int] = {
    "config": 0,
    "algorithms": 1, "tasks": 1, "tracking": 1,
    "models": 2,
    "training": 3, "evaluation": 3,
    "runs": 4,
    "dispatch": 5, "reports": 5,
    "sweeps": 6,
    "cli": 7,
}
"""Layer of each sub-package (see ARCHITECTURE.md): imports go from a higher layer to a lower one only."""

RUN_FOLDER_NAMES = {"config.yaml", "run.log", "train.log", "worker.json", "final", "lambda_state.json",
                    "lgrpo-manifest.json"}
TAG_KEY = re.compile(r"^lgrpo\.[a-z_]+(\.[a-z_]+)*\.?$")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _string_constants(tree: ast.AST):
    """String constants that are not docstrings."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            docstrings.add(id(node.value))  # attribute docstrings
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node


def _mentions_state_tag(node: ast.AST) -> bool:
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and child.id == "TAG_STATE":
            return True
        if isinstance(child, ast.Attribute) and child.attr == "TAG_STATE":
            return True
        if isinstance(child, ast.Constant) and child.value == "lgrpo.state":
            return True
    return False


WRITES = {"set_tag", "set_tags", "create_run", "log_batch", "start_run"}


def test_only_the_run_record_writes_the_state_tag():
    offenders = []
    for path in _modules():
        if path == RECORD:
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITES:
                if any(_mentions_state_tag(argument) for argument in [*node.args, *(k.value for k in node.keywords)]):
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert offenders == [], f"lgrpo.state written outside tracking/record.py: {offenders}"


def test_tag_keys_are_spelled_only_in_the_schema():
    offenders = []
    for path in _modules():
        if path == SCHEMA:
            continue
        for node in _string_constants(_tree(path)):
            if TAG_KEY.match(node.value):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.value!r}")
    assert offenders == [], f"lgrpo.* tag keys outside tracking/schema.py: {offenders}"


def test_run_folder_names_are_spelled_only_in_the_run_record():
    offenders = []
    for path in _modules():
        if path == RECORD:
            continue
        for node in _string_constants(_tree(path)):
            spelled = node.value in RUN_FOLDER_NAMES or node.value.startswith("checkpoint-")
            if spelled and not (path == SCHEMA and node.value in ("config.yaml", "train.log")):  # artifact names
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.value!r}")
    assert offenders == [], f"run-folder names outside tracking/record.py: {offenders}"


def _imported_packages(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "lgrpo_bench" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def _package_of(path: Path) -> str | None:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else None


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS), f"add new packages to LAYERS and ARCHITECTURE.md: {packages ^ set(LAYERS)}"


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_point_down_the_layers(package):
    offenders = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for line, imported in _imported_packages(path):
            if imported != package and (imported not in LAYERS or LAYERS[imported] >= LAYERS[package]):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports lgrpo_bench.{imported}")
    assert offenders == [], f"{package} (layer {LAYERS[package]}) imports sideways or upward: {offenders}"


def test_checking_a_grid_imports_no_heavy_library(tmp_path):
    """``lgrpo-bench plan`` (grid file read, every point validated and checked against the registries, states read,
    the table printed) imports neither torch, transformers, TRL, lm-eval, MLflow nor scipy: model presets, algorithm
    names and benchmark names are known without them."""
    import shutil
    import subprocess
    import sys

    grid = tmp_path / "quickstart.yaml"
    shutil.copy(PACKAGE.parent / "experiments" / "quickstart.yaml", grid)
    script = ("import sys\n"
              "from lgrpo_bench.cli import main\n"
              "sys.argv = ['lgrpo-bench', 'plan', 'quickstart.yaml']\n"
              "try:\n    main()\nexcept SystemExit as stop:\n    assert not stop.code, stop.code\n"
              "heavy = ('torch', 'transformers', 'trl', 'lm_eval', 'mlflow', 'scipy', 'matplotlib', 'pandas')\n"
              "print('imported:', sorted(m for m in heavy if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "15 runs" in done.stdout and done.stdout.strip().endswith("imported: []"), done.stdout[-500:]


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
    return found


def test_sqlite3_is_imported_by_the_store_reader_only():
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{line}" for path in _modules() if path != READER
                 for line, name in _imports(_tree(path)) if name.split(".")[0] == "sqlite3"]
    assert offenders == [], f"sqlite3 outside tracking/reader.py (read the store through its reader): {offenders}"
    assert any(name == "sqlite3" for _, name in _imports(_tree(READER)))


def test_no_private_mlflow_client():
    offenders = []
    for path in _modules():
        for node in ast.walk(_tree(path)):
            if (isinstance(node, ast.Attribute) and node.attr == "_tracking_client") or (
                    isinstance(node, ast.Constant) and node.value == "_tracking_client"):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert offenders == [], f"MLflow's private _tracking_client used: {offenders}"


def test_training_runs_are_created_and_looked_up_in_one_place():
    """``KIND_TRAIN`` in a run's creation tags only in runs/tracked.py; ``TAG_RUN_ID`` as a search key only in the reader."""
    creators, lookups = [], []
    for path in _modules():
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            names = {n.attr if isinstance(n, ast.Attribute) else getattr(n, "id", None) for n in ast.walk(node)}
            if name in ("run_tags", "create_run") and "KIND_TRAIN" in names and path != TRACKED:
                creators.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
            if name in ("runs", "search_runs") and "TAG_RUN_ID" in names and path != READER:
                lookups.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert creators == [], f"training runs created outside runs/tracked.py: {creators}"
    assert lookups == [], f"a run looked up by lgrpo.run_id outside tracking/reader.py: {lookups}"

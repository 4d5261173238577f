"""The shape of the package, checked by reading its source: one owner per concern, imports pointing one way.

* ``lgrpo.state`` is written only by :mod:`lgrpo_bench.tracking.record` (the run record's state machine);
* every ``lgrpo.*`` tag key is spelled only in :mod:`lgrpo_bench.tracking.schema`;
* every run-folder name (``config.yaml``, ``run.log``, ``checkpoint-N``, ...) only in the run record (the schema
  may name MLflow artifacts that happen to share a name);
* the packages form layers (ARCHITECTURE.md): a module imports only packages of lower layers and its own
  package, at the top of the file or inside a function alike; ``algorithms`` imports nothing of ours and ``config``
  only ``algorithms`` (the declarations its ``algorithm`` section is built from);
* the store has one reader: ``sqlite3`` is imported by :mod:`lgrpo_bench.tracking.reader` only, and MLflow's private
  client (``_tracking_client``) is used nowhere;
* a training run is created (``lgrpo.kind = train``) only by :mod:`lgrpo_bench.runs.tracked`, and a run is looked up
  by its run id (``lgrpo.run_id``) only through :func:`lgrpo_bench.tracking.reader.train_runs_by_run_id`;
* ``tracking`` holds tracking only: no UI (the MLflow UI's command, links and server supervision are
  :mod:`lgrpo_bench.ui`, process utilities :mod:`lgrpo_bench.procs`) and no TRL (no ``trl`` import, no mapping of
  TRL's log keys: that is :mod:`lgrpo_bench.training.trl_metrics`).
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
    "algorithms": 0, "procs": 0,
    "config": 1,
    "tasks": 2, "tracking": 2,
    "models": 3,
    "training": 4, "evaluation": 4,
    "runs": 5,
    "dispatch": 6, "reports": 6,
    "sweeps": 7, "ui": 7,
    "cli": 8,
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


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module):
    """Import statements run when the module is imported: top level, inside ``if``/``try``/``with`` blocks, not in
    functions or classes, not under ``if TYPE_CHECKING:``."""
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            pending += node.orelse if _is_type_checking(node) else [*node.body, *node.orelse]
        elif isinstance(node, ast.Try):
            pending += [*node.body, *node.orelse, *node.finalbody, *(s for h in node.handlers for s in h.body)]
        elif isinstance(node, ast.With):
            pending += node.body


def _runtime_imports(tree: ast.Module):
    """Every import statement that can run: at module level and inside functions alike (a function's import is a
    dependency all the same), not under ``if TYPE_CHECKING:``."""
    skipped = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
               for statement in node.body for inner in ast.walk(statement)}
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped]


def _import_graph() -> dict[str, set[str]]:
    """``{module: modules of lgrpo_bench it imports}`` (:func:`_runtime_imports`); ``from package import name`` counts as an import
    of the submodule ``package.name`` when there is one, else of the package."""
    paths = {_module_name(path): path for path in _modules()}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _runtime_imports(_tree(path)):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1], *([base] if base else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base for alias in node.names]
            edges |= {target for target in targets if target in paths and target != name}
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle():
    """No import circle inside lgrpo_bench (two modules importing each other, or a longer loop), counting imports at
    module level and inside functions alike, not those under ``if TYPE_CHECKING:``: a use case that needs two modules
    lives above both, not in one of them."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check itself
    cycles = _cycles(_import_graph())
    assert cycles == [], f"import circles: {cycles}"


def test_reports_import_scipy_lazily():
    """scipy costs 0.1–1 s to import: in reports/ only inside the functions that compute a power line or an interval
    (``lgrpo-bench plan`` and tables without statistics never pay for it)."""
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}" for path in sorted((PACKAGE / "reports").rglob("*.py"))
                 for node in _module_level_imports(_tree(path))
                 if any(name.split(".")[0] == "scipy" for name in
                        ([alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]))]
    assert offenders == [], f"module-level scipy imports in reports/: {offenders}"


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


UI_NAMES = {"UI_SERVER_ENV", "ServeOutcome", "experiment_runs_route", "grid_views", "serve_foreground", "start_supervised",
            "start_ui", "ui_base_url", "ui_command", "ui_links"}
"""The MLflow UI and the web-server supervision (:mod:`lgrpo_bench.ui`); every name in a ``ui/`` module's ``__all__`` counts too."""
PROCESS_NAMES = {"clear_group", "group_members", "signal_when_parent_dies"}
"""Process utilities (:mod:`lgrpo_bench.procs`): used by tracking's callers, never held by tracking."""
TRL_MAPPING_NAMES = {"TRL_TO_SCHEMA", "map_trl_key", "map_trl_logs"}
"""TRL's log keys mapped onto the schema's names (:mod:`lgrpo_bench.training.trl_metrics`)."""
TRAINER_STEP_KEYS = {(PACKAGE / "tracking" / "callback.py", "loss")}
"""TRL log keys tracking may spell, and where: the transformers callback tells a training step's log dict by
``transformers.Trainer``'s own ``loss`` key (it maps no key: the caller passes ``metric_name``)."""


def _exported_names(package: Path) -> set[str]:
    """The names listed in the ``__all__`` of a package's modules."""
    names: set[str] = set()
    for path in sorted(package.rglob("*.py")):
        for node in _tree(path).body:
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
                    and isinstance(node.value, (ast.List, ast.Tuple))):
                names |= {e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return names


def _names_used(tree: ast.AST) -> list[tuple[int, str]]:
    """Every name a module defines, imports or refers to (plain or as an attribute), with its line."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append((node.lineno, node.name))
        elif isinstance(node, ast.Name):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            found.append((node.lineno, node.attr))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found += [(node.lineno, (alias.asname or alias.name).split(".")[-1]) for alias in node.names]
    return found


def _trl_log_keys() -> set[str]:
    """The TRL log keys of the package's ``TRL_TO_SCHEMA`` literal, wherever it is defined."""
    keys: set[str] = set()
    for path in _modules():
        for node in ast.walk(_tree(path)):
            target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
            if isinstance(target, ast.Name) and target.id == "TRL_TO_SCHEMA" and isinstance(node.value, ast.Dict):
                keys |= {key.value for key in node.value.keys if isinstance(key, ast.Constant) and isinstance(key.value, str)}
    assert keys, "TRL_TO_SCHEMA (lgrpo_bench/training/trl_metrics.py) not found: the rule below would check nothing"
    return keys


def test_tracking_holds_no_ui_and_no_process_supervision():
    """tracking/ imports no module of ``lgrpo_bench.ui`` and defines, imports or uses no UI or process-supervision name."""
    ui = PACKAGE / "ui"
    forbidden = UI_NAMES | PROCESS_NAMES | (_exported_names(ui) if ui.is_dir() else set())
    offenders = []
    for path in sorted((PACKAGE / "tracking").rglob("*.py")):
        tree = _tree(path)
        offenders += [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}" for line, name in _imports(tree)
                      if name == "lgrpo_bench.ui" or name.startswith("lgrpo_bench.ui.")]
        offenders += [f"{path.relative_to(PACKAGE.parent)}:{line} {name}" for line, name in _names_used(tree) if name in forbidden]
    assert offenders == [], f"UI or process supervision in tracking/ (move it to ui/ or procs/): {sorted(set(offenders))}"


def test_tracking_holds_no_trl():
    """tracking/ imports no ``trl``, and holds no mapping of TRL's log keys: no TRL_TO_SCHEMA / map_trl_* name and no
    TRL log key spelled (but :data:`TRAINER_STEP_KEYS`); the mapping is :mod:`lgrpo_bench.training.trl_metrics`."""
    trl_keys = _trl_log_keys()
    offenders = []
    for path in sorted((PACKAGE / "tracking").rglob("*.py")):
        tree = _tree(path)
        where = path.relative_to(PACKAGE.parent)
        offenders += [f"{where}:{line} imports {name}" for line, name in _imports(tree) if name.split(".")[0] == "trl"]
        offenders += [f"{where}:{line} {name}" for line, name in _names_used(tree) if name in TRL_MAPPING_NAMES]
        offenders += [f"{where}:{node.lineno} {node.value!r}" for node in _string_constants(tree)
                      if node.value in trl_keys and (path, node.value) not in TRAINER_STEP_KEYS]
    assert offenders == [], f"TRL in tracking/ (TRL's log keys are mapped in training/trl_metrics.py): {sorted(set(offenders))}"

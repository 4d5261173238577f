"""Security (issue #8): loopback-only servers by default, no eval/exec anywhere, safe YAML only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lgrpo_bench"


def _python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_eval_or_exec_of_anything_in_the_package():
    """Model output and config values are data: nothing in the package evaluates strings as code
    (the builtins eval/exec/compile and ``builtins.eval``; ``model.eval()`` is a torch method, not this)."""
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            bare = isinstance(func, ast.Name) and func.id in ("eval", "exec", "compile")
            qualified = (isinstance(func, ast.Attribute) and func.attr in ("eval", "exec")
                         and isinstance(func.value, ast.Name) and func.value.id == "builtins")
            if bare or qualified:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not offenders, offenders


def _safe_loader_classes(tree: ast.Module) -> set[str]:
    """Classes of the module that derive from yaml.SafeLoader / yaml.CSafeLoader (constructors stay safe)."""
    names = {"SafeLoader", "CSafeLoader"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Attribute) and base.attr in ("SafeLoader", "CSafeLoader") for base in node.bases):
            names.add(node.name)
    return names


def test_yaml_is_only_loaded_safely():
    unsafe = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        safe_loaders = _safe_loader_classes(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "yaml"):
                continue
            if node.func.attr in ("unsafe_load", "full_load", "unsafe_load_all", "full_load_all"):
                unsafe.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} yaml.{node.func.attr}")
            elif node.func.attr in ("load", "load_all"):
                loader = next((kw.value for kw in node.keywords if kw.arg == "Loader"), None)
                loader_name = (loader.id if isinstance(loader, ast.Name) else loader.attr
                               if isinstance(loader, ast.Attribute) else None)
                if loader_name not in safe_loaders:
                    unsafe.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} yaml.{node.func.attr} "
                                  f"with Loader={loader_name}")
    assert not unsafe, unsafe


def test_python_object_tags_are_never_constructed(tmp_path):
    from lgrpo_bench.config.loading import ConfigError, read_yaml

    marker = tmp_path / "constructed"
    path = tmp_path / "evil.yaml"
    path.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        read_yaml(path)
    assert not marker.exists()


def test_dashboard_binds_loopback_by_default():
    from lgrpo_bench.sweeps import dashboard_command

    command = dashboard_command("sqlite:///optuna.db")
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert dashboard_command("journal:/tmp/x.journal")[1] == "/tmp/x.journal"

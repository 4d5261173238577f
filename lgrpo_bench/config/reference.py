"""The configuration reference, generated from the pydantic models (the documentation site's *Configuration* page).

Contract: every field of every model reachable from a root (the run config, the grid file, the sweep file, a grid's
``finding:`` block) gives one :class:`FieldDoc` whose ``key`` is its dotted path, whose ``default`` is the schema's
default written as YAML (``required`` when there is none) and whose ``description`` is the field's own. Nothing here
states a default by hand, so the page cannot drift from the code: ``docs/hooks.py`` renders it at ``mkdocs build``
and ``tests/test_docs.py`` checks it against pydantic's JSON Schema.

Paths: a nested model adds its field name (``train.max_steps``); a ``dict[str, Model]`` adds ``<name>``
(``eval.overrides.<benchmark>.k``); a ``list[Model]`` adds ``[]`` (``findings[].claim``); a discriminated union of
models (the executor) gives one section per member, named by its discriminator (``executor`` (kind: slurm)).
"""

from __future__ import annotations

import html
import inspect
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

#: The default shown for a nested section (its own keys carry the defaults, in the section's table).
SECTION_DEFAULT = "(its keys)"

#: Placeholder name of a ``dict[str, Model]`` entry, per dotted path of the dict (others get ``<name>``).
MAPPING_KEY_NAMES = {"eval.overrides": "<benchmark>", "space": "<dotted key>"}


@dataclass(frozen=True)
class FieldDoc:
    """One documented field: ``key`` is the dotted path, ``section`` the table it belongs to."""

    section: str
    key: str
    name: str
    type: str
    default: str
    description: str
    constraints: str
    unit: str


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _union_args(annotation: Any) -> tuple | None:
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return None


def _strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def type_name(annotation: Any) -> str:
    """A YAML reader's name of a type: ``int``, ``float``, ``str``, ``bool``, ``"a" | "b"``, ``list[int]``, ``… | null``."""
    annotation = _strip_annotated(annotation)
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    args = _union_args(annotation)
    if args is not None:
        names = [type_name(arg) for arg in args]
        return " | ".join(dict.fromkeys(names))  # a union of models is one "mapping"
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " | ".join(json.dumps(value) for value in typing.get_args(annotation))
    if origin in (list, tuple, dict):
        inner = ", ".join("…" if arg is Ellipsis else type_name(arg) for arg in typing.get_args(annotation))
        return f"{origin.__name__}[{inner}]" if inner else origin.__name__
    if _is_model(annotation):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def yaml_value(value: Any) -> str:
    """A default as it would be written in a YAML file (``null``, ``true``, ``3e-05``, ``0.1111111111111111``, ``[2, 3]``, ``{}``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # exact: 0.1111111111111111, 3e-05, 1.0
    if value == "":
        return '""'
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, BaseModel):
        return SECTION_DEFAULT
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {yaml_value(item)}" for key, item in value.items()) + "}"
    return str(value)


def default_of(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return yaml_value(info.default_factory())
    if info.default is PydanticUndefined:
        return "required"
    return yaml_value(info.default)


_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "length ≥"), ("max_length", "length ≤"),
           ("pattern", "matches"))


def constraints_of(info: FieldInfo) -> str:
    """The field's bounds (``≥ 1``, ``> 0``, ``≤ 4294967295``, ``matches ^…$``), from pydantic's metadata."""
    parts = []
    for item in info.metadata:
        for attribute, sign in _BOUNDS:
            bound = getattr(item, attribute, None)
            if bound is not None:
                parts.append(f"{sign} {bound}")
    return ", ".join(parts)


def unit_of(info: FieldInfo) -> str:
    extra = info.json_schema_extra
    return str(extra.get("unit", "")) if isinstance(extra, dict) else ""


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    annotation = _strip_annotated(annotation)
    args = _union_args(annotation)
    if args is not None:
        return [model for arg in args for model in _models_in(arg)]
    return [annotation] if _is_model(annotation) else []


def _discriminator_value(model: type[BaseModel], info: FieldInfo) -> str | None:
    name = info.discriminator if isinstance(info.discriminator, str) else None
    if name is None:
        for item in info.metadata:
            name = getattr(item, "discriminator", None) or name
    if name is None or name not in model.model_fields:
        return None
    return f"{name}: {model.model_fields[name].default}"


def document_model(model: type[BaseModel], prefix: str = "", section: str | None = None) -> list[FieldDoc]:
    """Every field of ``model`` and of the models inside it, in declaration order, depth first (see the module's
    contract for the paths)."""
    section = section if section is not None else (prefix or "(top level)")
    rows: list[FieldDoc] = []
    nested: list[FieldDoc] = []
    for name, info in model.model_fields.items():
        shown_name = info.alias or name
        key = f"{prefix}.{shown_name}" if prefix else shown_name
        annotation = _strip_annotated(info.annotation)
        members = _models_in(annotation)
        description = info.description or (inspect.cleandoc(members[0].__doc__ or "") if len(members) == 1 else "")
        rows.append(FieldDoc(section=section, key=key, name=shown_name, type=type_name(annotation),
                             default=default_of(info), description=description.strip(),
                             constraints=constraints_of(info), unit=unit_of(info)))
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if members:
            union = len(members) > 1
            for member in members:
                kind = _discriminator_value(member, info) if union else None
                nested += document_model(member, key, f"{key} ({kind})" if kind else key)
        elif origin is dict and args and _models_in(args[1]):
            placeholder = MAPPING_KEY_NAMES.get(key, "<name>")
            for member in _models_in(args[1]):
                nested += document_model(member, f"{key}.{placeholder}")
        elif origin is list and args and _models_in(args[0]):
            for member in _models_in(args[0]):
                nested += document_model(member, f"{key}[]")
    return rows + nested


def _cell(text: str) -> str:
    """Plain text in a table cell: a ``|`` is escaped (Python-Markdown and GitHub both drop the backslash)."""
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    """A code span in a table cell: Python-Markdown's tables keep a ``|`` inside backticks in the cell (escaping it
    would show the backslash), so only line breaks go."""
    return f"`{text.replace(chr(10), ' ')}`" if text and text != "required" else (text or "")


def _key(key: str) -> str:
    """A dotted key as inline HTML code that may break after a dot (``<wbr>``), so long keys leave the meaning room."""
    return "<code>" + html.escape(key).replace(".", ".<wbr>") + "</code>"


def render_markdown(rows: list[FieldDoc], heading_level: int = 3) -> str:
    """One table per section: key, type, default, meaning (with unit and bounds), for MkDocs' Python-Markdown."""
    out: list[str] = []
    current = None
    for row in rows:
        if row.section != current:
            current = row.section
            title = "Top-level keys" if current == "(top level)" else f"`{current}`"
            out += ["", f"{'#' * heading_level} {title}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        meaning = row.description
        notes = [note for note in (f"unit: {row.unit}" if row.unit else "", row.constraints) if note]
        if notes:
            meaning = f"{meaning} ({'; '.join(notes)})" if meaning else "; ".join(notes)
        out.append(f"| {_key(row.key)} | {_code(row.type)} | {_code(row.default)} | {_cell(meaning)} |")
    return "\n".join(out).lstrip("\n") + "\n"


def roots() -> dict[str, type[BaseModel]]:
    """The documented files, each by its root model: run config, grid file, sweep file, a grid's ``finding:``."""
    from lgrpo_bench.config.findings import FindingConfig
    from lgrpo_bench.config.grid import GridConfig
    from lgrpo_bench.config.schema import RunConfig
    from lgrpo_bench.config.sweep import SweepConfig

    return {"run": RunConfig, "grid": GridConfig, "sweep": SweepConfig, "finding": FindingConfig}


def reference(root: str) -> list[FieldDoc]:
    """The rows of one root's reference (``run``, ``grid``, ``sweep``, ``finding``); a grid's ``finding`` block and
    its ``base`` (a run config) are documented by their own roots."""
    model = roots()[root]
    rows = document_model(model)
    if root == "grid":
        rows = [row for row in rows if not row.key.startswith(("finding.", "findings[]."))]
    return rows

"""YAML loading (safe), dotted ``--set`` overrides, run identity.

Errors are :class:`ConfigError` whose message names the file and the dotted key; the CLI turns them
into exit code 2 before anything is launched.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from lgrpo_bench.config.schema import IDENTITY_EXCLUDED, RunConfig

ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration problem the user must fix; the message names the file and the key."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML mapping with ``yaml.safe_load`` (tags such as ``!!python/object`` are refused)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}{where}: malformed YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value`` → (``key.path``, value parsed as a YAML scalar/list)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.learning_rate=2e-6")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """data["a"]["b"] = value for key "a.b", creating intermediate mappings."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def known_keys(model: type[BaseModel] = RunConfig, prefix: str = "") -> set[str]:
    """Every dotted key a config accepts (sections and leaves)."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.add(dotted)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= known_keys(annotation, dotted + ".")
    return keys


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        bad = item.get("input")
        shown = "" if item["type"] in ("extra_forbidden", "missing") or isinstance(bad, dict) else f" (got {bad!r})"
        lines.append(f"{source}: {key}: {message}{shown}")
    return "\n".join(lines)


def validate_file(path: str | Path, model: type[ModelT]) -> ModelT:
    """Read the YAML file ``path`` safely and validate it as ``model``; :class:`ConfigError` naming file and keys.

    Executor sections are discriminated unions: pydantic's union tag is dropped from key paths
    (``executor.slurm.time`` → ``executor.time``) and a missing ``kind`` is named as such.
    """
    data = read_yaml(path)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        text = format_validation_error(err, str(path))
        text = re.sub(r": executor\.(local|ray|slurm)\.", ": executor.", text)
        text = text.replace("executor: Unable to extract tag using discriminator 'kind'",
                            "executor.kind: missing; one of local, ray, slurm")
        raise ConfigError(text) from None


def build_run_config(data: dict[str, Any], source: str = "<config>") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a run YAML, apply ``--set`` overrides, validate."""
    data = read_yaml(path)
    for text in overrides or []:
        key, value = parse_override(text)
        if key not in known_keys():
            raise ConfigError(f"--set {key}: unknown key (see `lgrpo-bench config schema`)")
        set_dotted(data, key, value)
    return build_run_config(data, str(path))


def identity_payload(config: RunConfig) -> dict[str, Any]:
    """The resolved config minus fields that do not change results (tracking, verbosity).

    The ``algorithm`` section is the resolved algorithm (``ResolvedAlgorithm.identity()``): the preset name, the
    four axis values and the hyperparameters those values use (unused ones are None). So ``{name: dapo}`` and
    ``{name: grpo, aggregation: token_mean}`` train identically but have different run ids (reports group rows by
    the preset name), while options a run does not use (``lambda_lr`` of grpo) never split a run id."""
    data = config.model_dump(mode="json")  # a fresh structure: nothing of the config is shared
    for section, fields in IDENTITY_EXCLUDED.items():
        if fields is None:
            data.pop(section, None)
        else:
            for name in fields:
                data.get(section, {}).pop(name, None)
    data["algorithm"] = config.resolved_algorithm.identity()
    data["task"]["template"] = config.resolved_template
    return data


def run_id(config: RunConfig) -> str:
    """Content hash (12 hex chars of sha256) of :func:`identity_payload`."""
    canonical = json.dumps(identity_payload(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def dump_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)

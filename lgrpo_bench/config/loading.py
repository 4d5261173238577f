"""YAML loading (safe and bounded), dotted ``--set`` overrides, run identity.

Errors are :class:`ConfigError` whose message names the file and the dotted key; the CLI turns them
into exit code 2 before anything is launched.

Every YAML file the tool reads (run configs, grids, sweeps) goes through :func:`read_yaml`:

* safe loading only: tags such as ``!!python/object`` are never constructed;
* a mapping that repeats a key is refused, naming the file, the line and the key (YAML lets the last one win
  silently; a second ``train:`` block would replace the first);
* anchors and aliases are allowed (``base: &b ...`` then ``*b``), but a document whose aliases expand to more than
  :data:`MAX_EXPANDED_NODES` nodes is refused before anything is built from it ("billion laughs": nine nested
  aliases expand a few lines into 10⁹ values);
* every number must be finite: ``.inf``, ``-.inf`` and ``.nan`` are refused wherever they stand (typed fields, grid
  axes and include/exclude values, sweep ranges, executor settings), naming the dotted key; the schemas refuse them
  too (``allow_inf_nan=False``: the strings ``inf`` and ``nan``, ``--set`` values, configs built in code);
* values echoed in error messages are cut to :data:`MAX_ECHO_CHARS` characters.

This module imports nothing of lgrpo_bench but the schemas: checks against registries (algorithms, models,
benchmarks, templates) are done by a *checker* that the caller passes in (``lgrpo_bench.runs.resolve``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from lgrpo_bench.config.schema import IDENTITY_EXCLUDED, IDENTITY_OMITTED_AT_DEFAULT, RunConfig

ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_EXPANDED_NODES = 1_000_000
"""The most YAML nodes a document may expand to once its aliases are followed (a 10,000-point grid file is a few
thousand; a billion-laughs bomb is 10⁹)."""
MAX_ECHO_CHARS = 200
"""Longest value repeated in an error message (longer ones end in "…")."""
FINITE_MESSAGE = "must be a finite number"
"""What an error says of ``.inf``, ``-.inf`` and ``.nan`` (a weight of inf made every reward inf and the run ended "done"
without the model changing)."""


class ConfigError(ValueError):
    """A configuration problem the user must fix; the message names the file and the key."""


@dataclass(frozen=True)
class ConfigProblem:
    """What a checker found wrong with a run config: the dotted ``key`` ("" for the config as a whole), the
    ``message``, and the offending ``value`` when there is one to show."""

    key: str
    message: str
    value: Any = None
    show_value: bool = False


Checker = Callable[[RunConfig], "list[ConfigProblem]"]
"""Checks of a validated run config against the registries (see ``lgrpo_bench.runs.resolve.run_problems``)."""


def no_checks(config: RunConfig) -> list[ConfigProblem]:
    """The checker that finds nothing (structure only)."""
    return []


def echo(value: Any) -> str:
    """``repr(value)`` cut to :data:`MAX_ECHO_CHARS` characters."""
    text = repr(value)
    return text if len(text) <= MAX_ECHO_CHARS else text[: MAX_ECHO_CHARS - 1] + "…"


class _BoundedSafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """The safe loader (libyaml's parser when PyYAML has it: 7× faster on a 100,000-value list) that refuses
    duplicate mapping keys and documents whose aliases expand too far."""

    source = "<yaml>"

    def construct_document(self, node):
        _check_expansion(node, self.source)
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    break
                if first is not None:
                    raise ConfigError(f"{self.source} (line {key_node.start_mark.line + 1}): duplicate key {echo(key)} "
                                      f"(first given on line {first}); YAML would silently keep only the last one")
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _without_sexagesimal(resolvers: dict) -> dict:
    """YAML 1.1 reads ``24:00:00`` as the base-60 integer 86400 and ``1:30.5`` as a float: a time limit written
    unquoted became 86400 minutes. Scalars holding a colon stay strings (as in YAML 1.2); the fields that take a
    time parse them themselves."""
    numeric = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
    return {first: [(tag, re.compile(r"(?=[^:]*$)" + regexp.pattern, regexp.flags) if tag in numeric else regexp)
                    for tag, regexp in entries]
            for first, entries in resolvers.items()}


_BoundedSafeLoader.yaml_implicit_resolvers = _without_sexagesimal(_BoundedSafeLoader.yaml_implicit_resolvers)


def _check_expansion(root, source: str) -> None:
    """Refuse a node graph that expands to more than :data:`MAX_EXPANDED_NODES` nodes (aliases followed)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            if isinstance(node, yaml.MappingNode):
                children = [child for pair in node.value for child in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            else:
                children = []
            total = 1 + sum(sizes[id(child)] for child in children)
            if total > MAX_EXPANDED_NODES:
                raise ConfigError(f"{source}: the document's anchors and aliases expand to more than "
                                  f"{MAX_EXPANDED_NODES:,} values (an alias bomb?); write the values out or use fewer "
                                  "nested aliases")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ConfigError(f"{source}: a recursive alias (a value that contains itself)")
        on_path.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            stack.extend((child, False) for pair in node.value for child in pair if id(child) not in sizes)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, False) for child in node.value if id(child) not in sizes)


def load_yaml_text(text: str, source: str) -> Any:
    """Parse ``text`` with the bounded safe loader (see the module docstring); ``source`` names it in errors."""
    loader = _BoundedSafeLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML mapping safely (see the module docstring); :class:`ConfigError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8"), str(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}{where}: malformed YAML: {problem}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    found = first_non_finite(data)
    if found is not None:
        key, value = found
        raise ConfigError(f"{path}: {key}: {FINITE_MESSAGE} (got {echo(value)})")
    return data


def first_non_finite(data: Any, key: str = "") -> tuple[str, float] | None:
    """The dotted key (``axes.train.learning_rate[1]``) and the value of the first float in ``data`` that is not
    finite (inf, -inf, nan), in document order; None when every float is. Mappings and lists shared through YAML
    aliases are visited once (a document holds at most :data:`MAX_EXPANDED_NODES` values)."""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [(key, data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                return where, value
        elif isinstance(value, (dict, list)):
            if id(value) in seen:
                continue
            seen.add(id(value))
            if isinstance(value, dict):
                children = [(f"{where}.{name}" if where else str(name), child) for name, child in value.items()]
            else:
                children = [(f"{where}[{i}]", child) for i, child in enumerate(value)]
            stack.extend(reversed(children))
    return None


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value`` → (``key.path``, value parsed as a YAML scalar/list)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.learning_rate=2e-6")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = load_yaml_text(raw, f"--set {key}") if raw.strip() else ""
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


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (``Model``, ``Model | None``, ``list[Model]``, ``dict[str, Model]``,
    a union of models)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def keys_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys ``model`` accepts in the mapping at ``loc`` (a pydantic error location without its last part):
    fields are followed into their models; parts that are no field (a list index, a dict key, a union tag such
    as ``local``) stay at the same models."""
    models = [model]
    for part in loc:
        fields = [m.model_fields[part] for m in models if isinstance(part, str) and part in m.model_fields]
        if fields:
            models = [inner for field in fields for inner in _models_in(field.annotation)]
    return sorted({name for m in models for name in m.model_fields})


def unknown_key_hint(key: str, known: list[str]) -> str:
    """``" (did you mean learning_rate?)"`` for the closest of ``known`` (difflib), else the keys accepted there."""
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f" (did you mean {close[0]}?)"
    if not known:
        return ""
    shown = ", ".join(known[:12]) + (", …" if len(known) > 12 else "")
    return f" (keys here: {shown})"


def error_message(item: dict[str, Any], model: type[BaseModel] = RunConfig) -> str:
    """The message of one pydantic error (``err.errors()`` item) of validating ``model``, as this tool words it;
    an unknown key gets a did-you-mean (or the keys accepted at its place)."""
    if item["type"] == "extra_forbidden":
        loc = tuple(item["loc"])
        return "unknown key" + unknown_key_hint(str(loc[-1]), keys_at(model, loc[:-1])) if loc else "unknown key"
    if item["type"] == "finite_number":
        return FINITE_MESSAGE
    return item["msg"].removeprefix("Value error, ")


def format_validation_error(err: ValidationError, source: str, model: type[BaseModel] = RunConfig) -> str:
    """One line per error of validating ``model``: ``<source>: <dotted key>: <message> (got <value>)``."""
    lines = []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = error_message(item, model)
        bad = item.get("input")
        shown = "" if item["type"] in ("extra_forbidden", "missing") or isinstance(bad, dict) else f" (got {echo(bad)})"
        lines.append(f"{source}: {key}: {message}{shown}")
    return "\n".join(lines)


def format_problems(problems: list[ConfigProblem], source: str) -> str:
    """One line per problem, ``<source>: <key>: <message> (got <value>)``, as pydantic's errors are shown."""
    lines = []
    for problem in problems:
        shown = f" (got {echo(problem.value)})" if problem.show_value else ""
        lines.append(f"{source}: {problem.key + ': ' if problem.key else ''}{problem.message}{shown}")
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
        text = format_validation_error(err, str(path), model)
        text = re.sub(r": executor\.(local|ray|slurm)\.", ": executor.", text)
        text = text.replace("executor: Unable to extract tag using discriminator 'kind'",
                            "executor.kind: missing; one of local, ray, slurm")
        raise ConfigError(text) from None


def build_run_config(data: dict[str, Any], source: str = "<config>", check: Checker = no_checks) -> RunConfig:
    """Validate ``data`` as a :class:`RunConfig`, then run ``check`` on it; :class:`ConfigError` naming ``source``
    and the keys otherwise."""
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    problems = check(config)
    if problems:
        raise ConfigError(format_problems(problems, source))
    return config


GRID_MARKERS = ("axes", "include", "exclude")
"""Top-level keys only a grid file has (a run config has none of them)."""
SWEEP_MARKERS = ("space", "objective", "n_trials")
"""Top-level keys only a sweep file has."""


def refuse_other_kind(data: dict[str, Any], path: str | Path) -> None:
    """:class:`ConfigError` when the mapping read from ``path`` (given as a run config) is a grid or a sweep file:
    it has a ``name`` and none of its top-level keys is a run-config section but ``base``-style ones."""
    if any(key in RunConfig.model_fields for key in data):
        return
    if any(key in data for key in SWEEP_MARKERS):
        raise ConfigError(f"{path}: a sweep file (it has {', '.join(k for k in SWEEP_MARKERS if k in data)}), not a run "
                          f"config: `lgrpo-bench sweep run {path}` runs it; this command takes a run YAML such as "
                          "experiments/tiny_lambda.yaml")
    if any(key in data for key in GRID_MARKERS):
        raise ConfigError(f"{path}: a grid file (it has {', '.join(k for k in GRID_MARKERS if k in data)}), not a run "
                          f"config: `lgrpo-bench plan {path}` lists its runs, `lgrpo-bench run {path}` runs them; this "
                          "command takes a run YAML such as experiments/tiny_lambda.yaml")


def check_override_key(key: str, model: type[BaseModel] = RunConfig, prefix: str = "") -> None:
    """:class:`ConfigError` unless the dotted ``key`` (``--set``) names a key of ``model``, with a did-you-mean.

    Keys inside a mapping of models are accepted with any mapping key: ``eval.overrides.gsm8k.max_tokens``
    (``overrides`` maps a benchmark name to a :class:`~lgrpo_bench.config.schema.BenchmarkEvalConfig`)."""
    models: list[type[BaseModel]] = [model]
    parts = key.split(".")
    index = 0
    while index < len(parts):
        part = parts[index]
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        if not fields:
            known = sorted({name for m in models for name in m.model_fields})
            where = ".".join(parts[:index])
            raise ConfigError(f"--set {prefix}{key}: unknown key{unknown_key_hint(part, known)}"
                              f"{f' in {prefix}{where}' if where else ''} (see `lgrpo-bench config schema`)")
        annotation = fields[0].annotation
        inner = _models_in(annotation)
        index += 1
        if not inner:
            if index < len(parts):
                raise ConfigError(f"--set {prefix}{key}: {prefix}{'.'.join(parts[:index])} is a value, not a section")
            return
        if typing.get_origin(annotation) is dict or any(typing.get_origin(a) is dict for a in typing.get_args(annotation)):
            index += 1  # the mapping's own key (a benchmark name): any
        models = inner


def load_run_config(path: str | Path, overrides: list[str] | None = None, check: Checker = no_checks) -> RunConfig:
    """Read a run YAML, apply ``--set`` overrides, validate, and ``check``. A grid or sweep file given where a run
    YAML belongs is named as such, with the commands that take it."""
    data = read_yaml(path)
    refuse_other_kind(data, path)
    for text in overrides or []:
        key, value = parse_override(text)
        check_override_key(key)
        set_dotted(data, key, value)
    return build_run_config(data, str(path), check)


def identity_payload(config: RunConfig, algorithm_identity: dict[str, Any]) -> dict[str, Any]:
    """What makes a run the run it is: the config minus fields that do not change results (:data:`IDENTITY_EXCLUDED`:
    tracking, evaluation, verbosity) and minus fields added later while at the value earlier runs had
    (:data:`IDENTITY_OMITTED_AT_DEFAULT`), with the algorithm section replaced by ``algorithm_identity`` and the
    prompt template resolved.

    ``algorithm_identity`` is the resolved algorithm (``ResolvedAlgorithm.identity()``, computed by the caller from
    the presets): the preset name, the four axis values and the hyperparameters those values use (unused ones are
    None). So ``{name: dapo}`` and ``{name: grpo, aggregation: token_mean}`` train identically but have different
    run ids (reports group rows by the preset name), while options a run does not use (``lambda_lr`` of grpo)
    never split a run id."""
    data = config.model_dump(mode="json")  # a fresh structure: nothing of the config is shared
    for section, fields in IDENTITY_EXCLUDED.items():
        if fields is None:
            data.pop(section, None)
        else:
            for name in fields:
                data.get(section, {}).pop(name, None)
    for section, defaults in IDENTITY_OMITTED_AT_DEFAULT.items():
        for name, default in defaults.items():
            if data.get(section, {}).get(name, default) == default:
                data.get(section, {}).pop(name, None)
    data["algorithm"] = dict(algorithm_identity)
    data["task"]["template"] = config.resolved_template
    return data


def identity_hash(payload: dict[str, Any]) -> str:
    """The run id: the first 12 hex characters of the SHA-256 of ``payload`` as canonical JSON."""
    return _hash_text(_canonical_json(payload))


def _canonical_json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def _hash_text(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


_SEED_PROBE = -(2**62) - 12_345
"""A ``train.seed`` no config can hold (seeds are ≥ 0): marks where the seed sits in a payload's canonical JSON."""


def seed_identity_hashes(payload: dict[str, Any]) -> Callable[[int], str]:
    """``seed ↦ identity_hash(payload with train.seed = seed)`` for an integer ``seed``, from one JSON encoding.

    The canonical JSON of ``payload`` with the seed set to :data:`_SEED_PROBE` (a value only that field holds) is
    split around ``"seed":<probe>``; the JSON of an ``int`` is its decimal text, so each seed's canonical JSON is
    ``head + "seed":<seed> + tail`` (a seed costs a SHA-256, not a dump: a grid's seed axis multiplies its points).
    Equal to :func:`identity_hash` for every seed (a test checks it)."""
    probe = {**payload, "train": {**payload["train"], "seed": _SEED_PROBE}}
    head, _, tail = _canonical_json(probe).partition(f'"seed":{_SEED_PROBE}')
    return lambda seed: _hash_text(f'{head}"seed":{int(seed)}{tail}')


def dump_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)

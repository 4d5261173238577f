r"""The benchmark registry: names, versions, data sources and default protocols, read from the task pack.

The task pack (``lgrpo_bench/evaluation/tasks/lgrpo_<benchmark>.yaml``, lm-eval task files) is the one place
where a benchmark is defined; this module reads those files, so the registry and what lm-eval runs cannot
disagree. Per benchmark:

``version``
    ``metadata.version`` of the task file, logged with every result (tag ``lgrpo.eval.<b>.version``); bump it
    when anything that changes scores changes (data normalization, stop rule, scorer contract).
``files``
    file names looked up in the data folder, first match wins (``<benchmark>.jsonl``; GSM8K also accepts
    ``gsm8k_test.jsonl``, the name of our shared copy). Records are ``{"id", "problem", "answer"}``
    (:func:`lgrpo_bench.tasks.math_data.load_jsonl`).
``hub``
    where the problems come from without a data folder: ``datasets.load_dataset(path, name, split=split)``
    with the field names of that copy, and an ``answer_format`` rule for copies whose answers need the
    normalization our files already have (``gsm8k_after_hashes``: the text after ``####`` without thousands
    commas; ``first_of_list_without_dollars``: OlympiadBench's ``final_answer[0]`` without ``$``;
    ``without_dollars``). ``None``: no public copy is registered; a data folder is required (college_math).
    The hub copies are the usual public ones; only MATH-500, AIME 2025, OlympiadBench and GSM8K were checked
    against our files (see ``shared/data/math/PROVENANCE.md``), the others are not verified here (offline).
``default protocol``
    ``repeats`` (k) and ``generation_kwargs`` (temperature, top_p, max_gen_toks) of the task file:

    =============  ==========  ====================================================================
    benchmark      protocol    why
    =============  ==========  ====================================================================
    math500        greedy      500 problems: sampling noise is small, greedy as in the Qwen2.5-Math
    minerva_math   greedy      harness (SimpleRL-Zoo's set of eight)
    olympiadbench  greedy
    gsm8k          greedy
    gaokao2023en   greedy
    college_math   greedy
    aime24         avg@32      30 problems: one problem is 3.3 points, so one greedy sample is too
    aime25         avg@32      noisy; T = 0.6, top-p 0.95 (open-r1 / lighteval; SimpleRL-Zoo uses
    amc23          avg@16      avg@32 at T = 1.0)
    arith          greedy      the tiny presets' held-out split, 40 new tokens (longest worked answer)
    =============  ==========  ====================================================================

    All math benchmarks generate up to 3,000 new tokens and stop at the model's end-of-sequence token only.

``arith`` is not read from files: it is the held-out test split of the synthetic task
(:func:`lgrpo_bench.tasks.arith.train_test_split` with ``ARITH_SPLIT_SEED``, ``ARITH_N_TEST``,
``ARITH_DEFAULT_DIGITS``), the same 500 problems the tiny presets hold out and the training runs report as
``train/heldout_acc``. It is scored with :func:`lgrpo_bench.tasks.arith.score_arith`, the arith reward.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lgrpo_bench.tasks.math_data import Problem, load_jsonl

__all__ = [
    "ARITH",
    "BENCHMARK_NAMES",
    "DATA_DIR_ENV",
    "TASK_DIR",
    "TASK_PREFIX",
    "Benchmark",
    "BenchmarkDataError",
    "HubSource",
    "get_benchmark",
    "load_problems",
    "normalize_hub_answer",
    "resolve_data_dir",
]

TASK_DIR = Path(__file__).resolve().parent / "tasks"
"""The lm-eval task pack: pass it as ``TaskManager(include_path=TASK_DIR)`` or ``lm_eval --include_path``."""
TASK_PREFIX = "lgrpo_"
"""lm-eval task name = prefix + benchmark name (``lgrpo_aime24``), so lm-eval's own ``aime24`` (string-equality
scoring, "Question: ... Answer:" prompt) is never picked by accident."""
DATA_DIR_ENV = "LGRPO_DATA_DIR"
ARITH = "arith"


class BenchmarkDataError(FileNotFoundError):
    """A benchmark's problems cannot be read (file missing in the data folder, hub unreachable)."""


@dataclass(frozen=True)
class HubSource:
    """A public copy on the Hugging Face hub and the names of its fields."""

    path: str
    split: str
    problem: str
    answer: str
    id: str | None = None
    name: str | None = None
    answer_format: str | None = None


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of the task pack (see the module docstring)."""

    name: str
    version: str
    files: tuple[str, ...]
    hub: HubSource | None
    k: int
    temperature: float
    top_p: float
    max_tokens: int
    scorer: str

    @property
    def task_name(self) -> str:
        return TASK_PREFIX + self.name

    @property
    def protocol(self) -> str:
        return "greedy" if self.temperature == 0 else f"avg@{self.k}"


if hasattr(yaml, "CSafeLoader"):  # libyaml's parser, where PyYAML was built with it
    class _TaskFileLoader(yaml.CSafeLoader):
        """Safe YAML loading that keeps lm-eval's ``!function`` references as plain strings."""
else:
    class _TaskFileLoader(yaml.SafeLoader):
        """Safe YAML loading that keeps lm-eval's ``!function`` references as plain strings."""


_TaskFileLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _read_task_file(path: Path) -> Benchmark:
    config = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskFileLoader)  # noqa: S506 - safe loader subclass
    metadata = config.get("metadata") or {}
    generation = config.get("generation_kwargs") or {}
    hub = metadata.get("hub")
    name = config["dataset_kwargs"]["benchmark"]
    if config["task"] != TASK_PREFIX + name:
        raise ValueError(f"{path}: task {config['task']!r} must be {TASK_PREFIX + name!r}")
    filter_fn = str(config.get("filter_list", [{}])[0].get("filter", [{}])[0].get("filter_fn", ""))
    return Benchmark(
        name=name,
        version=str(metadata["version"]),
        files=tuple(metadata.get("files") or ()),
        hub=HubSource(**hub) if hub else None,
        k=int(config.get("repeats", 1)),
        temperature=float(generation.get("temperature", 0.0)) if generation.get("do_sample") else 0.0,
        top_p=float(generation.get("top_p", 1.0)),
        max_tokens=int(generation["max_gen_toks"]),
        scorer="arith" if filter_fn.endswith("score_arith_responses") else "math",
    )


@functools.lru_cache(maxsize=1)
def _registry() -> dict[str, Benchmark]:
    benchmarks = [_read_task_file(path) for path in sorted(TASK_DIR.glob(f"{TASK_PREFIX}*.yaml"))]
    return {benchmark.name: benchmark for benchmark in benchmarks}


BENCHMARK_NAMES: tuple[str, ...] = tuple(_registry())
"""Every registered benchmark, in file-name order."""


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark ``name``; ``KeyError`` whose message lists the registered names."""
    try:
        return _registry()[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARK_NAMES)}") from None


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """``data_dir`` if given, else ``$LGRPO_DATA_DIR`` if set (non-empty), else ``None`` (= the hub)."""
    if data_dir is not None and str(data_dir).strip():
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else None


_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def normalize_hub_answer(raw: Any, answer_format: str | None) -> str:
    """A hub record's answer in our files' form (see :class:`HubSource`); pure.

    ``gsm8k_after_hashes``: ``"... #### 1,000"`` → ``"1000"``; ``first_of_list_without_dollars``:
    ``["$x=2$."]`` → ``"x=2"``; ``without_dollars``: ``"$5$"`` → ``"5"``; ``None``: ``str(raw).strip()``
    (so integer answers become strings).
    """
    if answer_format == "gsm8k_after_hashes":
        return str(raw).split("####")[-1].strip().replace(",", "")
    if answer_format in ("first_of_list_without_dollars", "without_dollars"):
        text = raw[0] if answer_format == "first_of_list_without_dollars" and isinstance(raw, (list, tuple)) else raw
        text = _UNESCAPED_DOLLAR.sub("", str(text)).strip()
        return text[:-1].strip() if text.endswith(".") else text
    if answer_format is None:
        return str(raw).strip()
    raise ValueError(f"unknown answer_format {answer_format!r}")


def _load_from_hub(benchmark: Benchmark) -> list[Problem]:
    source = benchmark.hub
    if source is None:
        raise BenchmarkDataError(
            f"benchmark {benchmark.name!r} has no registered hub copy: put {benchmark.files[0]} in a data folder "
            f"and pass it with --data-dir / eval.data_dir / ${DATA_DIR_ENV}"
        )
    try:
        import datasets

        rows = datasets.load_dataset(source.path, source.name, split=source.split)
        problems = [
            Problem(
                id=str(row[source.id]) if source.id else str(index),
                problem=str(row[source.problem]),
                answer=normalize_hub_answer(row[source.answer], source.answer_format),
            )
            for index, row in enumerate(rows)
        ]
    except Exception as error:  # noqa: BLE001 - any hub failure gets the same advice
        raise BenchmarkDataError(
            f"could not load benchmark {benchmark.name!r} from the hub ({source.path}): {type(error).__name__}: "
            f"{error}. Offline? Use a data folder holding {' or '.join(benchmark.files)} "
            f"(--data-dir, eval.data_dir or ${DATA_DIR_ENV})."
        ) from error
    return problems


def _arith_problems() -> list[Problem]:
    from lgrpo_bench.tasks.arith import ARITH_DEFAULT_DIGITS, ARITH_N_TEST, ARITH_SPLIT_SEED, train_test_split

    _, test = train_test_split(ARITH_SPLIT_SEED, 0, ARITH_N_TEST, ARITH_DEFAULT_DIGITS)
    return [Problem(id=p.id, problem=p.problem, answer=p.answer) for p in test]


def load_problems(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Problem]:
    """The problems of benchmark ``name``, in order.

    ``arith``: the held-out split (no data needed). Others: with a data folder (``data_dir``, else
    ``$LGRPO_DATA_DIR``) the first of the benchmark's ``files`` found there, and a
    :class:`BenchmarkDataError` listing the expected names when none is; without one, the hub copy.
    """
    benchmark = get_benchmark(name)
    if benchmark.name == ARITH:
        return _arith_problems()
    folder = resolve_data_dir(data_dir)
    if folder is None:
        return _load_from_hub(benchmark)
    for file_name in benchmark.files:
        if (folder / file_name).is_file():
            return load_jsonl(folder / file_name)
    raise BenchmarkDataError(
        f"data folder {folder} has no file for benchmark {name!r}: expected {' or '.join(benchmark.files)} "
        f"(one JSON object per line with id, problem, answer)"
    )

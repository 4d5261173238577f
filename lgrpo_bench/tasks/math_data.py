r"""Loading math problem sets: local JSONL files (our format) or MATH from the Hugging Face hub.

File format (as in ``shared/data/math/*.jsonl``, see its ``PROVENANCE.md``): one JSON object per line with
non-empty ``id``, ``problem`` and ``answer`` (LaTeX, no ``\boxed{}`` wrapper); every other key (``solution``,
``level``, ``type``, ``subject``, ...) is kept in :attr:`Problem.extra`. Blank lines are skipped.

:func:`problems_hash` fingerprints a problem list (ids, problems, answers, in order); evaluation logs it so
that two results can be checked to come from the same data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "MATH_HUB_ID",
    "MATH_SUBJECTS",
    "MATH_TRAIN_FILENAME",
    "Problem",
    "filter_levels",
    "load_jsonl",
    "load_math_train",
    "math_level",
    "problems_hash",
]

logger = logging.getLogger(__name__)

MATH_HUB_ID = "EleutherAI/hendrycks_math"
"""Default hub dataset for MATH train (one config per subject, ``train`` split)."""

MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
"""The seven MATH subjects, i.e. the configs of :data:`MATH_HUB_ID`."""

MATH_TRAIN_FILENAME = "math_train.jsonl"
"""File looked up when the source is a folder."""

_REQUIRED_KEYS = ("id", "problem", "answer")


@dataclass(frozen=True)
class Problem:
    """One problem: ``id`` (unique within a set), ``problem`` text, reference ``answer`` (no ``\\boxed{}``),
    and ``extra`` holding every other field of the record (``level``, ``solution``, ...)."""

    id: str
    problem: str
    answer: str
    extra: dict[str, Any] = field(default_factory=dict, hash=False)


def _required_text(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and key != "problem":
        value = str(value)  # integer ids / answers are unambiguous; floats ("27.0") are not accepted
    if not isinstance(value, str) or not value.strip():
        found = "missing" if key not in record else f"{type(value).__name__} {value!r:.60}"
        raise ValueError(
            f"{where}: field {key!r} must be a non-empty string, found {found}. "
            f"Each line needs non-empty 'id', 'problem' and 'answer'; fix or remove this line."
        )
    return value


def load_jsonl(path: str | Path) -> list[Problem]:
    """Problems of a JSONL file, in file order.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file and the 1-based line
    number for invalid JSON, a line that is not an object, a missing / empty ``id``, ``problem`` or
    ``answer``, or an ``id`` seen before.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such problem file: {path}")
    problems: list[Problem] = []
    first_line_of_id: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object with 'id', 'problem', 'answer', "
                                 f"found {type(record).__name__}")
            problem_id, problem_text, answer = (_required_text(record, key, where) for key in _REQUIRED_KEYS)
            if problem_id in first_line_of_id:
                raise ValueError(
                    f"{where}: duplicate id {problem_id!r} (first on line {first_line_of_id[problem_id]}); "
                    "ids must be unique"
                )
            first_line_of_id[problem_id] = line_number
            extra = {key: value for key, value in record.items() if key not in _REQUIRED_KEYS}
            problems.append(Problem(id=problem_id, problem=problem_text, answer=answer, extra=extra))
    return problems


_LEVEL_TEXT = re.compile(r"^\s*(?:level\s*)?(\d+)\s*$", re.IGNORECASE)


def math_level(problem: Problem) -> int | None:
    """MATH difficulty level of a problem: ``extra["level"]`` as ``"Level 3"`` or ``3``; ``None`` if absent
    or unknown (MATH train has two ``"Level ?"`` records)."""
    level = problem.extra.get("level")
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str):
        match = _LEVEL_TEXT.match(level)
        if match:
            return int(match.group(1))
    return None


def filter_levels(problems: Iterable[Problem], levels: Sequence[int] | None) -> list[Problem]:
    """The problems whose :func:`math_level` is in ``levels`` (all problems when ``levels`` is ``None``)."""
    if levels is None:
        return list(problems)
    if not levels:
        raise ValueError("levels must name at least one MATH level (1-5), or be None for all levels")
    wanted = {int(level) for level in levels}
    return [problem for problem in problems if math_level(problem) in wanted]


def _load_math_from_hub(hub_id: str) -> list[Problem]:
    """MATH train from the hub, answer = content of the last box of the solution (records without one are
    skipped). Unlike ``math_train.jsonl``, several boxed answers are not joined (12 records differ)."""
    from lgrpo_bench.tasks.scoring import extract_boxed

    try:
        import datasets

        problems: list[Problem] = []
        skipped = 0
        for subject in MATH_SUBJECTS:
            split = datasets.load_dataset(hub_id, subject, split="train")
            for index, record in enumerate(split):
                answer = extract_boxed(record.get("solution") or "")
                if not answer or not answer.strip():
                    skipped += 1
                    continue
                extra = {key: value for key, value in record.items() if key != "problem"}
                problems.append(
                    Problem(id=f"hub/{subject}/{index}", problem=record["problem"], answer=answer, extra=extra)
                )
    except Exception as error:  # noqa: BLE001 - any hub failure gets the same advice
        raise RuntimeError(
            f"could not load MATH train from the Hugging Face hub ({hub_id!r}): {type(error).__name__}: {error}. "
            "If this machine is offline, point the task at local data instead: set task.data (or the "
            f"data_dir argument) to a JSONL file or to a folder holding {MATH_TRAIN_FILENAME} "
            "(fields id, problem, answer, level)."
        ) from error
    if skipped:
        logger.warning("MATH from %s: skipped %d records whose solution has no \\boxed{} answer", hub_id, skipped)
    return problems


def _local_file(path: Path) -> Path:
    if path.is_dir():
        candidate = path / MATH_TRAIN_FILENAME
        if not candidate.is_file():
            raise FileNotFoundError(
                f"folder {path} has no {MATH_TRAIN_FILENAME}; pass the JSONL file itself or a folder that holds it"
            )
        return candidate
    return path


def _looks_like_path(source: str) -> bool:
    return source.endswith(".jsonl") or source.startswith((".", "/", "~")) or Path(source).exists()


def load_math_train(
    source: str | Path | None = None,
    levels: Sequence[int] | None = None,
    data_dir: str | Path | None = None,
) -> list[Problem]:
    """MATH training problems, optionally only some difficulty levels.

    Where they come from, first match wins:

    1. ``source`` is an existing ``.jsonl`` file, or a folder holding ``math_train.jsonl``: that file.
    2. ``source`` is ``None`` and ``data_dir`` is given: ``data_dir/math_train.jsonl`` (or ``data_dir`` itself
       if it is a file).
    3. ``source`` is ``None`` (hub id :data:`MATH_HUB_ID`) or any other string (taken as a hub id with the
       seven MATH subject configs): the hub via ``datasets.load_dataset``, with each answer extracted from the
       last ``\\boxed{}`` of the solution. Failure (e.g. offline) raises ``RuntimeError`` saying to use local
       data.

    A ``source`` that looks like a path (ends in ``.jsonl``, starts with ``.``, ``/`` or ``~``) but does not
    exist raises ``FileNotFoundError``. ``levels`` keeps problems whose ``level`` (``"Level 3"`` or ``3``)
    is listed; ``None`` keeps all, including the two ``"Level ?"`` records.
    """
    if isinstance(source, Path) or (isinstance(source, str) and _looks_like_path(source)):
        path = _local_file(Path(source).expanduser())
        problems = load_jsonl(path)
    elif source is None and data_dir is not None:
        problems = load_jsonl(_local_file(Path(data_dir).expanduser()))
    else:
        problems = _load_math_from_hub(source or MATH_HUB_ID)
    return filter_levels(problems, levels)


def problems_hash(problems: Iterable[Problem]) -> str:
    """First 16 hex characters of the SHA-256 over ``(id, problem, answer)`` of each problem, in order.

    Each triple is serialized as a JSON array followed by a newline, so field boundaries are unambiguous.
    ``extra`` is not hashed.
    """
    digest = hashlib.sha256()
    for problem in problems:
        digest.update(json.dumps([problem.id, problem.problem, problem.answer], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]

"""``table.tex`` and ``deltas.tex`` compiled with a real pdflatex inside a standard ``article``: no overfull box with
1 benchmark and with 9 (long names, key columns, row marks and their footnotes), at 10 and 12 pt.

pdflatex comes from Debian's ``texlive-latex-base`` and ``texlive-latex-recommended`` (booktabs); ``.ci/run``
installs them. Where pdflatex is missing the test installs them with apt-get when it runs as root, and skips,
saying why, only where that is impossible.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lgrpo_bench.reports import build_table
from lgrpo_bench.reports.loader import RunRecord
from lgrpo_bench.reports.render import to_latex, to_latex_deltas, to_markdown
from lgrpo_bench.tracking import schema as t

BENCHMARKS_9 = ("math500", "aime24", "aime25", "amc23", "minerva_math", "olympiadbench", "gsm8k", "gaokao2023en", "college_math")
ALGORITHMS = ("grpo", "dapo", "dr_grpo", "lambda_grpo", "dapo_full")
TEX_PACKAGES = ("texlive-latex-base", "texlive-latex-recommended")


def _pdflatex() -> str:
    found = shutil.which("pdflatex")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"pdflatex is not installed and cannot be installed here (needs root and apt-get: apt-get install "
                    f"{' '.join(TEX_PACKAGES)})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *TEX_PACKAGES], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0 or not shutil.which("pdflatex"):
        pytest.skip(f"pdflatex could not be installed (apt-get install {' '.join(TEX_PACKAGES)}: {done.stderr.strip()[-300:]})")
    return shutil.which("pdflatex")


@pytest.fixture(scope="module")
def pdflatex() -> str:
    return _pdflatex()


def _run(algorithm: str, seed: int, benchmarks, *, params=None, tags=None, skip=()) -> RunRecord:
    name = f"{algorithm}-{seed}-{'-'.join(sorted((params or {}).values()))}"
    accuracy = {b: 0.3 + 0.05 * ALGORITHMS.index(algorithm) + 0.013 * seed + 0.01 * i for i, b in enumerate(benchmarks) if b not in skip}
    return RunRecord(
        mlflow_run_id=name, run_id=name, algorithm=algorithm, model="tiny-s", model_size="1.5B", seed=str(seed), state="done",
        grid=None, experiment_id="0", start_time=0,
        eval_metrics={b: {"acc": v} for b, v in accuracy.items()},
        eval_identity={b: {"hash": f"h-{b}", "protocol": "greedy", "k": "1", "temperature": "0.0", "top_p": "1.0",
                           "n": "30" if b.startswith("aime") else "500"} for b in accuracy},
        eval_source={b: name for b in accuracy}, params={"algorithm.name": algorithm, "train.seed": str(seed), **(params or {})},
        tags=dict(tags or {}),
    )


def wide_runs(benchmarks) -> list[RunRecord]:
    """5 algorithms × 3 seeds, λ-GRPO at two lam_init values and rate-limited, one out-of-band warm start, a missing
    benchmark in one run (a cell with its own n), two kinds of hardware: every wide thing a table can hold."""
    runs = []
    for algorithm in ALGORITHMS:
        for lam_init in (("0.0", "1.0") if algorithm == "lambda_grpo" else ("0.0",)):
            for seed in range(3):
                tags = {t.TAG_HARDWARE: "cpu:AMD EPYC 7B13:AVX2" if seed else "cpu:Intel Xeon Platinum 8480+:AVX512"}
                if algorithm == "lambda_grpo":
                    tags[t.TAG_LAMBDA_RATE_LIMITED_FRAC] = "0.9"
                if algorithm == "grpo" and seed == 2:
                    tags |= {t.TAG_WARM_START_IN_BAND: "false", t.TAG_WARM_START_GREEDY_ACC: "0.082"}
                skip = benchmarks[-1:] if (algorithm == "dapo" and seed == 2 and len(benchmarks) > 1) else ()
                runs.append(_run(algorithm, seed, benchmarks, params={"algorithm.lam_init": lam_init}, tags=tags, skip=skip))
    return runs


def _compile(pdflatex: str, folder: Path, body: str, size: str) -> str:
    (folder / "doc.tex").write_text(
        f"\\documentclass[{size}]{{article}}\n\\usepackage{{booktabs}}\n\\begin{{document}}\n{body}\n\\end{{document}}\n")
    done = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=folder, capture_output=True,
                          text=True, timeout=120)
    log = (folder / "doc.log").read_text(encoding="latin-1")
    assert done.returncode == 0, log[-3000:]
    return log


@pytest.mark.parametrize("n_benchmarks", [1, 9])
def test_tables_fit_an_article_text_width(pdflatex, tmp_path, n_benchmarks):
    benchmarks = BENCHMARKS_9[:n_benchmarks]
    table = build_table(wide_runs(benchmarks))
    assert [c.key for c in table.columns] == sorted(benchmarks)
    (tmp_path / "table.tex").write_text(to_latex(table))
    (tmp_path / "deltas.tex").write_text(to_latex_deltas(table))
    # as a reader \input's them: in a float when they are short, else centred in the text (tall ones break between tabulars)
    body = "\n".join((f"\\begin{{table}}\\centering\n\\input{{{name}}}\n\\caption{{{name}}}\n\\end{{table}}" if n_benchmarks == 1
                      else f"{{\\centering\n\\input{{{name}}}\n}}") + "\n\\clearpage" for name in ("table", "deltas"))
    for size in ("10pt", "12pt"):
        log = _compile(pdflatex, tmp_path, body, size)
        assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox.*", log)
        assert "Overfull \\vbox" not in log and "Float too large" not in log
        assert "Output written on doc.pdf" in log
    summary, deltas = (tmp_path / "table.tex").read_text(), (tmp_path / "deltas.tex").read_text()
    # the marks and footnotes are typeset (not only in a comment), and 9 benchmarks need several stacked tabulars
    assert r"grpo\textsuperscript{\textdagger{}}" in summary  # the baseline row: no Δ row to mark in deltas.tex
    for text in (summary, deltas):
        assert r"lambda\_grpo\textsuperscript{\textdaggerdbl{}}" in text
        assert "not converged" in text.split(r"\end{tabular}")[-1]
    assert "2 kinds of hardware" in summary.split(r"\end{tabular}")[-1]
    if n_benchmarks == 1:
        assert summary.count(r"\begin{tabular}") == 1 and "Average" not in summary
    else:
        assert summary.count(r"\begin{tabular}") >= 2 and deltas.count(r"\begin{tabular}{") >= 2
        # every value column appears exactly once over the stacked tabulars, each with the label columns
        headers = [line for line in summary.splitlines() if line.startswith("Size & ")]
        shown = [cell.strip(" \\") for line in headers for cell in line.split(" & ")[4:]]
        assert sorted(shown) == sorted([*(b.replace("_", r"\_") for b in benchmarks), "Average"])


def test_one_benchmark_has_no_average_column_and_two_do():
    one = build_table([_run(a, s, ("arith",)) for a in ("grpo", "dapo") for s in range(2)])
    assert not one.has_average and "Average" not in to_markdown(one) and "average" not in one.value_keys
    two = build_table([_run(a, s, ("arith", "gsm8k")) for a in ("grpo", "dapo") for s in range(2)])
    assert two.has_average and "| Average |" in to_markdown(two).splitlines()[0]

"""Shipped bases (issue 24): the warm starts the quickstart and the findings use ship in the package, verified by
hash, and are used before the cache; a shipped base that fails its hashes is named and the cache serves instead;
the build path stays the one that made them."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lgrpo_bench.models import tiny
from lgrpo_bench.models.presets import TINY_PRESETS
from lgrpo_bench.models.tiny import build_tiny

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_SET = [("tiny-s", seed) for seed in range(5)] + [("tiny-m", 0), ("tiny-l", 0)]
STEPS, EVAL, SAMPLED, SEED = 20, 8, 2, 0
SPEC = dataclasses.replace(TINY_PRESETS["tiny-s"], stop=dataclasses.replace(TINY_PRESETS["tiny-s"].stop,
                                                                            validation_size=8))


def default_key(preset: str, seed: int) -> str:
    spec = TINY_PRESETS[preset]
    return tiny._cache_key(spec, seed, spec.sft_steps, tiny.ARITH_N_TEST, tiny.SAMPLED_EVAL_PROMPTS)


def test_the_package_ships_tiny_s_seeds_0_to_4_and_tiny_m_and_tiny_l_seed_0_verified_and_small():
    assert set(tiny.shipped_keys()) >= {default_key(p, s) for p, s in SHIPPED_SET}
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "ship_bases.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr  # hashes, manifest and the 20 MB budget
    manifest = json.loads((tiny.SHIPPED_DIR / "MANIFEST.json").read_text())
    for entry in manifest["bases"]:
        assert entry["built_on"]["cpu_capability"] and len(entry["model_sha256"]) == 64
        if entry["task"] == "arith":
            assert entry["recipe_version"] == tiny.RECIPE_VERSION
            assert 0.25 <= entry["heldout_greedy_acc"] <= 0.65  # every shipped arith base lies in the band
    from lgrpo_bench.models.testbed import lenmix_cache_key

    lenmix = {lenmix_cache_key(default_key("tiny-s", seed)) for seed in range(5)}
    assert lenmix <= set(tiny.shipped_keys()), "the findings' lenmix bases ship too"
    for entry in manifest["bases"]:
        if entry["key"] in lenmix:  # each names the shipped arith base it continues
            parent = next(e for e in manifest["bases"] if entry["key"].startswith(e["key"] + "-lenmix"))
            assert entry["parent_model_sha256"] == parent["model_sha256"]


def test_a_default_preset_resolves_to_its_shipped_base_and_writes_nothing_to_the_cache(tmp_path):
    cache = tmp_path / "cache"
    build = build_tiny("tiny-s", seed=1, cache_dir=cache, emit=lambda line: pytest.fail(f"unexpected line: {line}"))
    assert build.path == tiny.SHIPPED_DIR / default_key("tiny-s", 1)
    assert build.metrics["source"] == "shipped" and build.cached
    assert not cache.exists()
    from lgrpo_bench.training.run import warm_start_tags

    tags = warm_start_tags(build)
    assert tags["lgrpo.base_model.source"] == "shipped"
    assert tags["lgrpo.base_model.sha256"] == build.metrics["files"]["model.safetensors"]["sha256"]


def test_a_lenmix_run_starts_from_its_shipped_base_without_building(tmp_path):
    from lgrpo_bench.models.testbed import build_tiny_for_task

    build = build_tiny_for_task("tiny-s", "lenmix", seed=3, cache_dir=tmp_path / "cache")
    assert build.metrics["source"] == "shipped" and build.path.parent == tiny.SHIPPED_DIR
    assert not (tmp_path / "cache").exists()


def test_a_corrupt_shipped_base_is_named_and_the_cache_serves_instead(tmp_path, monkeypatch):
    made = build_tiny(SPEC, cache_dir=tmp_path / "builder", seed=SEED, sft_steps=STEPS, eval_problems=EVAL,
                      sampled_prompts=SAMPLED, use_shipped=False)
    shipped = tmp_path / "shipped"
    shutil.copytree(made.path, shipped / made.path.name)
    monkeypatch.setattr(tiny, "SHIPPED_DIR", shipped)

    def again(cache: Path, **kwargs) -> tiny.TinyBuildResult:
        return build_tiny(SPEC, cache_dir=cache, seed=SEED, sft_steps=STEPS, eval_problems=EVAL,
                          sampled_prompts=SAMPLED, **kwargs)

    lines: list[str] = []
    first = again(tmp_path / "empty", emit=lines.append)
    assert first.metrics["source"] == "shipped" and first.path == shipped / made.path.name
    assert again(tmp_path / "other", use_shipped=False).metrics["source"] == "built"

    weights = shipped / made.path.name / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one flipped byte in the tensor data
    weights.write_bytes(bytes(data))
    lines.clear()
    second = again(tmp_path / "fresh", emit=lines.append)
    assert second.metrics["source"] == "built" and second.path.parent == tmp_path / "fresh"
    assert any("shipped warm start" in line and "fails verification" in line for line in lines), lines
    assert second.model_hash == made.model_hash  # the cache rebuilt the same weights (same machine, one thread)

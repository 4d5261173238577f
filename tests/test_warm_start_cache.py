"""The warm-start cache heals its stuck states (issue 22): corrupt builds are found by their recorded hashes and
rebuilt, a read-only cache serves verified builds (and says clearly when it cannot), and a killed build's
temporary folder is removed by the next build of its key. Real files, real processes, real read-only folders."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from lgrpo_bench.models import tiny
from lgrpo_bench.models.presets import TINY_PRESETS
from lgrpo_bench.models.tiny import WarmStartCacheError, build_tiny

STEPS, EVAL, SAMPLED, SEED = 20, 8, 2, 0
SPEC = dataclasses.replace(TINY_PRESETS["tiny-s"], stop=dataclasses.replace(TINY_PRESETS["tiny-s"].stop,
                                                                            validation_size=8))
KEY = tiny._cache_key(SPEC, SEED, STEPS, EVAL, SAMPLED)


PREPARING = "preparing warm start tiny-s (seed 0): building it, or waiting for the process that builds it"


def build(cache: Path, **kwargs) -> tiny.TinyBuildResult:
    """A real (small) build of the test key in ``cache``: ~2 s plus the import. ``emit`` gets the lines after the
    "preparing" line, which is said first whenever no verified build is at hand (and never otherwise)."""
    emit = kwargs.pop("emit", None)
    said: list[str] = []
    result = build_tiny(SPEC, cache_dir=cache, seed=SEED, sft_steps=STEPS, eval_problems=EVAL,
                        sampled_prompts=SAMPLED, emit=said.append, **kwargs)
    if not result.cached:
        assert said[:1] == [PREPARING], said  # a build says so before it waits for the build lock
    assert said.count(PREPARING) <= 1, said
    for line in said:
        if emit is not None and line != PREPARING:
            emit(line)
    return result


def never(*_args) -> None:
    pytest.fail("the cached build was rebuilt")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temporary(cache: Path) -> list[str]:
    return sorted(entry.name for entry in cache.iterdir() if ".tmp" in entry.name)


def snapshot(cache: Path) -> dict[str, int]:
    """Every path under ``cache`` with its mtime: a cache that was not written to keeps it."""
    return {str(path.relative_to(cache)): path.stat().st_mtime_ns for path in [cache, *cache.rglob("*")]}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tiny.TinyBuildResult:
    """One fresh build; tests copy its folder into caches of their own."""
    return build(tmp_path_factory.mktemp("source-cache"))


@pytest.fixture
def cache(source, tmp_path) -> Path:
    """A cache holding a copy of the source build (hashes recorded)."""
    root = tmp_path / "cache"
    root.mkdir()
    shutil.copytree(source.path, root / KEY)
    return root


def strip_hashes(folder: Path) -> None:
    """Make ``folder`` look like a build cached before hashes were recorded."""
    metrics = json.loads((folder / "metrics.json").read_text())
    del metrics["files"]
    (folder / "metrics.json").write_text(json.dumps(metrics))


# ------------------------------------------------------------------------------------------- hashes


def test_a_build_records_every_file_and_its_model_hash(source):
    folder = source.path
    files = source.metrics["files"]
    assert sorted(files) == sorted(p.name for p in folder.iterdir() if p.name != "metrics.json")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(files)
    for name, record in files.items():
        assert record == {"bytes": (folder / name).stat().st_size, "sha256": sha256(folder / name)}, name
    assert source.model_hash == sha256(folder / "model.safetensors") and len(source.model_hash) == 64
    assert json.loads((folder / "metrics.json").read_text())["files"] == files
    cached = build(folder.parent, progress=never)
    assert cached.cached and cached.model_hash == source.model_hash and cached.metrics["files"] == files
    # a shared cache must be readable by other users: the umask's modes, not mkdtemp's 0700 / safetensors' 0600
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o666 & ~umask}


def test_a_truncated_model_is_rebuilt_with_one_line_and_loads(cache, source):
    model = cache / KEY / "model.safetensors"
    size = model.stat().st_size
    with open(model, "r+b") as handle:
        handle.truncate(size // 2)
    lines: list[str] = []
    rebuilt = build(cache, emit=lines.append)
    assert lines[0] == (f"cached warm start {KEY} is corrupt (model.safetensors: {size // 2:,} bytes, {size:,} "
                        f"expected); rebuilding")
    assert not [line for line in lines if "corrupt" in line][1:]  # said once
    assert not rebuilt.cached and rebuilt.path == cache / KEY
    assert model.stat().st_size == size and rebuilt.model_hash == sha256(model)
    assert rebuilt.model_hash == source.model_hash  # same machine, same key: bit-identical weights
    assert tiny._inspect(rebuilt.path)[0] == "ok"
    assert AutoModelForCausalLM.from_pretrained(rebuilt.path).num_parameters() == rebuilt.metrics["n_params"]
    assert temporary(cache) == []
    again: list[str] = []
    assert build(cache, emit=again.append, progress=never).cached and not [x for x in again if "corrupt" in x]


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("damage", "problem"), [
    (_flip_last_byte, "model.safetensors: {size:,} bytes, hash mismatch"),  # same size: only the hash sees it
    (lambda p: p.unlink(), "model.safetensors: missing"),
    (lambda p: (p.parent / "tokenizer.json").write_text("{}"), "tokenizer.json: 2 bytes, {tok:,} expected"),
    (lambda p: (p.parent / "metrics.json").write_text('{"preset": "tiny'), "metrics.json: unreadable ("),
    (lambda p: (p.parent / "metrics.json").unlink(), "metrics.json: missing"),
])
def test_each_kind_of_damage_is_found_and_named(cache, damage, problem):
    model = cache / KEY / "model.safetensors"
    size, tok = model.stat().st_size, (cache / KEY / "tokenizer.json").stat().st_size
    damage(model)
    state, _, found = tiny._inspect(cache / KEY)
    assert state == "corrupt" and found.startswith(problem.format(size=size, tok=tok)), found


def test_a_flipped_bit_is_rebuilt(cache, source):
    """The hash, not the size, catches it: the whole path, from the cache to a healed build."""
    model = cache / KEY / "model.safetensors"
    _flip_last_byte(model)
    lines: list[str] = []
    rebuilt = build(cache, emit=lines.append)
    assert f"cached warm start {KEY} is corrupt (model.safetensors: {model.stat().st_size:,} bytes, hash " \
           f"mismatch); rebuilding" in lines
    assert not rebuilt.cached and sha256(model) == rebuilt.model_hash == source.model_hash


# ------------------------------------------------------------------------------- builds without hashes


def test_a_build_cached_before_hashes_is_used_and_gets_its_hashes(cache, source):
    strip_hashes(cache / KEY)
    assert tiny._inspect(cache / KEY)[0] == "legacy"
    lines: list[str] = []
    used = build(cache, progress=never, emit=lines.append)
    assert used.cached and used.model_hash == source.model_hash and not [x for x in lines if "corrupt" in x]
    assert json.loads((cache / KEY / "metrics.json").read_text())["files"] == source.metrics["files"]
    assert tiny._inspect(cache / KEY)[0] == "ok" and sorted(p.name for p in (cache / KEY).iterdir()) == sorted(
        p.name for p in source.path.iterdir())  # no temporary metrics file left


@pytest.mark.parametrize(("cut", "problem"), [
    (lambda size: size - 4, "model.safetensors: {cut:,} bytes, its header describes {size:,}"),
    (lambda size: 100, "model.safetensors: 100 bytes, header length"),
    (lambda size: 3, "model.safetensors: 3 bytes, shorter than a safetensors header"),
])
def test_a_truncated_build_cached_before_hashes_is_not_trusted(cache, cut, problem):
    strip_hashes(cache / KEY)
    model = cache / KEY / "model.safetensors"
    size = model.stat().st_size
    with open(model, "r+b") as handle:
        handle.truncate(cut(size))
    state, _, found = tiny._inspect(cache / KEY)
    assert state == "corrupt" and found.startswith(problem.format(cut=cut(size), size=size)), found


def test_a_damaged_build_cached_before_hashes_is_rebuilt(cache):
    strip_hashes(cache / KEY)
    (cache / KEY / "tokenizer_config.json").write_text("{not json")
    lines: list[str] = []
    rebuilt = build(cache, emit=lines.append)
    assert lines[0].startswith(f"cached warm start {KEY} is corrupt (tokenizer_config.json: unreadable (")
    assert lines[0].endswith("); rebuilding") and not rebuilt.cached and tiny._inspect(rebuilt.path)[0] == "ok"
    AutoTokenizer.from_pretrained(rebuilt.path)


# ------------------------------------------------------------------------------- temporary folders


@pytest.mark.e2e  # SIGKILL of a real build
def test_a_killed_build_leaves_a_folder_the_next_build_removes(tmp_path, source):
    """A real build in a real process, SIGKILLed mid-SFT (its progress hook blocks at step 5, so the kill lands
    inside the build): its temporary folder stays behind; the next build of the key removes it and builds."""
    cache = tmp_path / "cache"
    marker = tmp_path / "at-step-5"
    code = (
        "import dataclasses, pathlib, time\n"
        "from lgrpo_bench.models.presets import TINY_PRESETS\n"
        "from lgrpo_bench.models.tiny import build_tiny\n"
        "spec = dataclasses.replace(TINY_PRESETS['tiny-s'], stop=dataclasses.replace(TINY_PRESETS['tiny-s'].stop,"
        " validation_size=8))\n"
        "def progress(step, total, loss):\n"
        "    if step == 5:\n"
        f"        pathlib.Path({str(marker)!r}).touch()\n"
        "        time.sleep(3600)\n"
        f"build_tiny(spec, cache_dir={str(cache)!r}, seed={SEED}, sft_steps={STEPS}, eval_problems={EVAL},"
        f" sampled_prompts={SAMPLED}, progress=progress)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        deadline = time.monotonic() + 180
        while not (marker.exists() and cache.is_dir() and temporary(cache)):
            if process.poll() is not None:
                pytest.fail(f"the build ended before it was killed: {process.communicate()[0]}")
            assert time.monotonic() < deadline, "the build never reached step 5"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    (stale,) = temporary(cache)
    assert stale.startswith(f".{KEY}.tmp-") and not (cache / KEY).exists()  # the stuck state, reproduced

    lines: list[str] = []
    result = build(cache, emit=lines.append)  # the killed process's lock died with it
    assert lines[0] == f"removed 1 temporary folder(s) of an interrupted build of warm start {KEY} ({stale})"
    assert temporary(cache) == [] and not result.cached
    assert tiny._inspect(result.path)[0] == "ok" and result.model_hash == source.model_hash
    AutoModelForCausalLM.from_pretrained(result.path)


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failed_build_leaves_nothing_temporary(tmp_path, error):
    def progress(step, _total, _loss):
        if step == 3:
            raise error

    with pytest.raises(type(error)):
        build(tmp_path, progress=progress)
    assert temporary(tmp_path) == [] and not (tmp_path / KEY).exists()
    assert [p.name for p in tmp_path.iterdir()] == [f".{KEY}.lock"]


def test_a_verified_build_tidies_what_a_killed_replacement_left_when_no_one_builds(cache):
    """Killed between replacing a corrupt build and deleting it, a process leaves the old folder beside a verified
    build: a cache hit removes it when the key's lock is free, and leaves it (without waiting) when it is held."""
    aside = cache / f".{KEY}.tmp-replaced-4242-abcd"
    aside.mkdir()
    (aside / "model.safetensors").write_bytes(b"old")
    hold = (f"import fcntl, time; f = open({str(cache / f'.{KEY}.lock')!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
            f"print('held', flush=True); time.sleep(20)")
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # a builder (another process) holds the key's lock
        started = time.perf_counter()
        assert build(cache, progress=never).cached and temporary(cache) == [aside.name]
        assert time.perf_counter() - started < 5  # did not wait for the lock
    finally:
        holder.kill()
        holder.wait()
    lines: list[str] = []
    assert build(cache, progress=never, emit=lines.append).cached and temporary(cache) == []
    assert lines[0] == f"removed 1 temporary folder(s) of an interrupted build of warm start {KEY} ({aside.name})"


def test_the_stale_folders_of_other_keys_are_left_alone(cache):
    """Only the key being built is cleaned: another key's temporary folder may belong to a live build."""
    (cache / KEY / "model.safetensors").write_bytes(b"")
    other = cache / f".{KEY}-eval16x8.tmp-123-abcd"  # a key that extends this one
    other.mkdir()
    build(cache)
    assert temporary(cache) == [other.name]


# ----------------------------------------------------------------------------------------- read-only


def _make_read_only(paths: list[Path], probe: Path) -> Callable[[], None]:
    """Make ``paths`` refuse writes for real: chmod for a normal user; as root (who ignores modes) the immutable
    attribute (as tests/test_faults.py does). Returns the undo; skips when neither works here."""
    if os.geteuid() != 0:
        modes = {path: path.stat().st_mode for path in paths}
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        return lambda: [path.chmod(mode) for path, mode in modes.items()] and None
    probe.mkdir()
    try:
        attr = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, text=True)
    except OSError as error:
        pytest.skip(f"running as root, where chmod does not stop writes, and chattr is missing ({error})")
    try:
        (probe / "x").touch()
        blocked = False
    except OSError:
        blocked = True
    subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
    if attr.returncode != 0 or not blocked:
        pytest.skip(f"running as root, where chmod does not stop writes, and chattr +i does not work here "
                    f"({attr.stderr.strip() or 'writes still succeed'})")
    subprocess.run(["chattr", "+i", *map(str, paths)], check=True)
    return lambda: subprocess.run(["chattr", "-i", *map(str, paths)], check=True) and None


@pytest.fixture
def read_only(tmp_path):
    """``freeze(root)``: make ``root`` and everything under it read-only until the test ends."""
    undo: list[Callable[[], None]] = []

    def freeze(root: Path) -> None:
        paths = [root, *sorted(root.rglob("*"))]
        undo.append(_make_read_only(paths, tmp_path / f"probe{len(undo)}"))
        with pytest.raises(OSError):
            (root / "written").touch()

    yield freeze
    for step in reversed(undo):
        step()


def test_a_read_only_cache_serves_its_verified_build_without_writing(cache, source, read_only):
    before = snapshot(cache)
    read_only(cache)
    used = build(cache, progress=never)
    assert used.cached and used.path == cache / KEY and used.model_hash == source.model_hash
    assert AutoModelForCausalLM.from_pretrained(used.path).num_parameters() == used.metrics["n_params"]
    assert snapshot(cache) == before  # no lock file, nothing


def test_a_read_only_cache_serves_a_build_cached_before_hashes(cache, source, read_only):
    strip_hashes(cache / KEY)
    before = snapshot(cache)
    read_only(cache)
    used = build(cache, progress=never)
    assert used.cached and used.model_hash == source.model_hash  # computed, not recorded
    assert snapshot(cache) == before and "files" not in json.loads((cache / KEY / "metrics.json").read_text())


def test_a_read_only_cache_without_the_build_says_what_to_do(tmp_path, read_only):
    cache = tmp_path / "shared"
    cache.mkdir()
    read_only(cache)
    with pytest.raises(WarmStartCacheError) as raised:
        build(cache, progress=never)
    message = str(raised.value)
    assert message.startswith(f"warm-start cache {cache} lacks warm start {KEY} and cannot be written to (")
    assert message.endswith("set LGRPO_CACHE_DIR (or tracking.cache_dir) to a writable folder, where it will be "
                            "built")
    assert "\n" not in message and raised.value.__cause__ is None and raised.value.__suppress_context__
    assert list(cache.iterdir()) == []


def test_a_read_only_cache_with_a_corrupt_build_names_the_damage(cache, read_only):
    model = cache / KEY / "model.safetensors"
    size = model.stat().st_size
    with open(model, "r+b") as handle:
        handle.truncate(1000)
    before = snapshot(cache)
    read_only(cache)
    with pytest.raises(WarmStartCacheError, match=(
            f"^warm-start cache {cache} holds a corrupt build of warm start {KEY} \\(model.safetensors: 1,000 "
            f"bytes, {size:,} expected\\) and cannot be written to .*set LGRPO_CACHE_DIR")):
        build(cache, progress=never)
    assert snapshot(cache) == before


def test_a_cache_folder_that_cannot_be_created_says_what_to_do(tmp_path, read_only):
    parent = tmp_path / "parent"
    parent.mkdir()
    read_only(parent)
    with pytest.raises(WarmStartCacheError, match=f"^warm-start cache {parent / 'cache'} lacks warm start"):
        build(parent / "cache")

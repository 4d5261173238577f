"""Warm workers (issue 23): runs forked from a server that imported torch, TRL, lm-eval and MLflow once.

* the server is fork-safe: no Python thread besides the main one, no CUDA context, the heavy libraries imported;
* a run forked warm gives bit-identical metrics to the same run in a fresh interpreter (same seed, same machine);
* killing the warm server kills its runs (and the orchestrator then records them as failed, resumable);
* a run that cannot be forked warm starts fresh, and its log says why.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from lgrpo_bench.runs.resolve import load_grid
from shared_server import start_shared_server
from test_faults import alive, cli, session_of, start_run, wait_until

TIMING_METRICS = {"train/step_s", "train/tokens_per_s", "train/runtime_s", "train/samples_per_s", "train/steps_per_s",
                  "eval/arith/seconds"}
"""Metrics that measure the machine, not the run (everything else must be equal to the bit)."""


def write_grid(tmp_path: Path, model: str, *, name: str, warm: bool = True, steps: int = 3,
               evaluation: dict | None = None, seeds=(0,)) -> Path:
    base = {
        "model": {"name": model},
        "task": {"name": "arith", "num_train_problems": 64, "num_heldout_problems": 16},
        "algorithm": {"name": "lambda_grpo", "r": 0.3, "lambda_lr": 0.1},
        "train": {"max_steps": steps, "num_generations": 4, "prompts_per_step": 4, "max_completion_length": 24,
                  "heldout_every": 1, "heldout_size": 16, "save_every": 1, "samples_every": 0},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "warm", "runs_dir": str(tmp_path / "runs")},
    }
    if evaluation:
        base["eval"] = evaluation
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": base, "axes": {"train.seed": list(seeds)},
                                    "executor": {"kind": "local", "slots": 1, "warm_workers": warm}}, sort_keys=False))
    return path


def test_the_warm_server_is_fork_safe_and_has_imported_the_heavy_libraries():
    from lgrpo_bench.runs.warm import server_report

    report = server_report()
    assert report["fork_problems"] == [] and not report["cuda_initialized"] and report["threads"] == 1
    assert report["imported"] == ["lm_eval", "mlflow", "torch", "transformers", "trl"]
    # the preload's objects are frozen out of the collector's walks, and the run's own garbage is still collected
    assert report["gc_enabled"] and report["gc_frozen"] > 100_000, report
    again = server_report()  # the same server: forking is what a run pays, not importing
    assert again["server_pid"] == report["server_pid"] and again["child_pid"] != report["child_pid"]
    assert again["fork_latency_s"] < 5, again


def test_what_cannot_be_forked_warm(monkeypatch):
    import sys

    from lgrpo_bench.runs import warm
    from lgrpo_bench.runs.warm import warm_refusal

    # as in a process whose warm server has not started yet: it will import in the first run's environment
    monkeypatch.setattr(warm, "_server_environ", None)
    here = dict(os.environ)
    assert warm_refusal(here) is None and warm_refusal({**here, "HF_HOME": "/elsewhere"}) is None
    # once it has started (here: in this process's environment), runs must share the variables read at import time
    monkeypatch.setattr(warm, "_server_environ", here)
    assert warm_refusal(here) is None
    assert warm_refusal({**here, "CUDA_VISIBLE_DEVICES": "1", "MLFLOW_TRACKING_URI": "x", "LGRPO_X": "y"}) is None
    assert "HF_HOME" in warm_refusal({**here, "HF_HOME": "/elsewhere"})
    assert "OMP_NUM_THREADS" in warm_refusal({**here, "OMP_NUM_THREADS": str(os.cpu_count() + 7)})
    assert "another interpreter" in warm_refusal(here, python="/usr/bin/python3-other")
    assert warm_refusal(here, python=sys.executable) is None
    assert "accelerate launch" in warm_refusal(here, gpus=2)
    monkeypatch.setenv("LGRPO_WARM_WORKERS", "0")
    assert warm_refusal(dict(os.environ)) == "$LGRPO_WARM_WORKERS=0"


def test_the_warm_server_imports_in_the_first_runs_environment_and_this_process_keeps_its_own():
    """A Ray worker begun by ``ray start`` lacks what the orchestrator's environment has (MLflow's telemetry switch,
    the user's ``HF_HOME``): its warm server starts in the first run's variables read at import time, the rest and
    this process's own environment stay as they were, and a later run with other such variables is refused."""
    code = textwrap.dedent("""
        import json, os, pathlib
        from lgrpo_bench.runs import warm
        warm.PRELOAD_MODULE = "json"  # the start, not the heavy imports, is under test
        os.environ.pop("HF_HOME", None)
        os.environ["MLFLOW_LOGGING_LEVEL"] = "INFO"
        os.environ["LGRPO_ONLY_HERE"] = "1"
        run_env = {**os.environ, "HF_HOME": "/tmp/hf-of-the-run", "MLFLOW_LOGGING_LEVEL": "WARNING", "LGRPO_ONLY_HERE": "2"}
        del run_env["LGRPO_ONLY_HERE"]
        warm._forkserver(run_env)
        me = os.getpid()
        children = pathlib.Path(f"/proc/{me}/task/{me}/children").read_text().split()
        servers = [pid for pid in children if b"forkserver" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()]
        server_env = dict(item.split("=", 1) for item in pathlib.Path(f"/proc/{servers[0]}/environ").read_text().split("\\0")
                          if "=" in item)
        keys = ("HF_HOME", "MLFLOW_LOGGING_LEVEL", "LGRPO_ONLY_HERE")
        print(json.dumps({"server": {k: server_env.get(k) for k in keys}, "here": {k: os.environ.get(k) for k in keys},
                          "same": warm.warm_refusal(run_env), "other": warm.warm_refusal({**run_env, "HF_HOME": "/x"})}))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["server"] == {"HF_HOME": "/tmp/hf-of-the-run", "MLFLOW_LOGGING_LEVEL": "WARNING", "LGRPO_ONLY_HERE": "1"}
    assert seen["here"] == {"HF_HOME": None, "MLFLOW_LOGGING_LEVEL": "INFO", "LGRPO_ONLY_HERE": "1"}
    assert seen["same"] is None and "HF_HOME" in seen["other"], seen


def _histories(uri: str, experiment: str) -> dict:
    from lgrpo_bench.tracking import open_client

    client = open_client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], "tags.`lgrpo.kind` = 'train'")
    return {key: [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
            for key in run.data.metrics if key not in TIMING_METRICS}


HOW = {"shared": "[forked from the warm server at {server}, shared]", "own": "[forked from the warm server]",
       "fresh": "[fresh interpreter (warm workers are off for this executor)]"}
"""The header line of the run's attempt in ``run.log`` (``lgrpo_bench.dispatch.job``) for each way a run starts."""


@pytest.mark.slow
def test_a_warm_run_gives_bit_identical_metrics_to_a_fresh_one(warm_tiny, shared_warm_server, tmp_path):
    """The same run forked from the shared warm server, from the grid's own warm server and in a fresh interpreter."""
    results = {}
    for how in HOW:
        folder = tmp_path / how
        folder.mkdir()
        grid = write_grid(folder, str(warm_tiny.path), name="g", warm=how != "fresh",
                          evaluation={"benchmarks": ["arith"], "limit": 24})
        done = cli("run", str(grid), cwd=folder, env={"LGRPO_WARM_SERVER": "" if how == "own" else shared_warm_server})
        assert done.returncode == 0, done.stdout + done.stderr
        (rid,) = [p.run_id for p in load_grid(grid).points]
        log = (folder / "runs" / "warm" / rid / "run.log").read_text()
        assert HOW[how].format(server=shared_warm_server) in log, log[:600]
        assert sum(header.format(server=shared_warm_server) in log for header in HOW.values()) == 1, log[:600]
        results[how] = _histories(f"sqlite:///{folder / 'mlflow.db'}", "warm")
    assert "eval/arith/acc" in results["fresh"] and "train/lambda" in results["fresh"] and "train/loss" in results["fresh"]
    for how in ("shared", "own"):
        assert results[how].keys() == results["fresh"].keys()
        differ = {key: (results[how][key], results["fresh"][key]) for key in results[how]
                  if results[how][key] != results["fresh"][key]}
        assert differ == {}, (how, differ)  # every loss, reward, λ, held-out and eval value equal to the bit


@pytest.mark.slow
@pytest.mark.parametrize("which", ["own", "shared"])
def test_killing_the_warm_server_kills_its_runs_and_they_resume(warm_tiny, tmp_path, which):
    """The grid's own server, or a shared one (started here: the session's shared server must live on)."""
    steps = 30
    grid = write_grid(tmp_path, str(warm_tiny.path), name="k", steps=steps)
    (rid,) = [p.run_id for p in load_grid(grid).points]
    folder = tmp_path / "runs" / "warm" / rid
    shared = start_shared_server() if which == "shared" else None
    try:
        orchestrator = start_run(grid, tmp_path, env={"LGRPO_WARM_SERVER": shared.path if shared else ""})
        wait_until(lambda: (folder / "checkpoint-1" / "lgrpo-manifest.json").exists() and not (folder / "final").exists(),
                   orchestrator, "a checkpoint")
        child = json.loads((folder / "worker.json").read_text())["child_pid"]
        server = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert server != orchestrator.pid and session_of(child) == child  # forked by the server, in its own session
        assert server == (shared.process.pid if shared else server)
        os.kill(server, signal.SIGKILL)
    finally:
        if shared:
            shared.stop()
    deadline = time.time() + 30
    while alive(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(child), "a run outlived its warm server"
    output, _ = orchestrator.communicate(timeout=300)
    assert orchestrator.returncode == 1 and f"failed {rid}: train killed by SIGKILL" in output, output
    again = cli("run", str(grid), cwd=tmp_path)  # a new warm server; the run resumes from its checkpoint
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming from checkpoint-" in (folder / "run.log").read_text()


def test_imports_kept_out_of_gc_freezes_what_the_block_made_and_restores_the_collector():
    import gc

    from lgrpo_bench.procs import imports_kept_out_of_gc

    class Cycle:
        pass

    assert gc.isenabled()
    before = gc.get_freeze_count()
    try:
        with imports_kept_out_of_gc():
            assert not gc.isenabled()
            made = [Cycle() for _ in range(1_000)]  # noqa: F841  (alive while frozen)
        assert gc.isenabled() and gc.get_freeze_count() >= before + 1_000
        gc.disable()
        with imports_kept_out_of_gc():
            pass
        assert not gc.isenabled()  # a collector that was off stays off
        gc.enable()
        with pytest.raises(RuntimeError), imports_kept_out_of_gc():
            raise RuntimeError("an import failed")
        assert gc.isenabled()
    finally:
        gc.enable()  # the 1,000 objects stay frozen: gc.unfreeze() would also hand back what collection froze


def test_a_shared_server_serves_the_environments_it_imported_in_and_stops_with_its_process(monkeypatch, tmp_path):
    """:mod:`lgrpo_bench.runs.server`: fork-safe after its imports; serves only runs whose import-time environment is
    its own (else the grid's own server forks them); gone, it is said and passed over; it stops, removing its socket,
    when the process ``--exit-with`` names ends."""
    import subprocess

    from lgrpo_bench.procs import LIBRARY_ENV_DEFAULTS
    from lgrpo_bench.runs import server as shared_server, warm
    from lgrpo_bench.runs.server import SERVER_ENV

    sleeper = subprocess.Popen(["sleep", "600"])
    # as a shell has it: without what imports in this test process added (torch's TORCHINDUCTOR_CACHE_DIR, …)
    base = {key: value for key, value in os.environ.items() if key not in ("TORCHINDUCTOR_CACHE_DIR", "HF_XET_HIGH_PERFORMANCE")}
    started = start_shared_server(base, exit_with=sleeper.pid)
    path, process = started.path, started.process
    try:
        monkeypatch.setenv(SERVER_ENV, path)
        server = shared_server.connect(path)  # waits for the greeting while the server imports
        assert isinstance(server, shared_server.SharedServer), server
        assert server.pid == process.pid and server.fork_problems == []
        here = {**base, **LIBRARY_ENV_DEFAULTS}  # a command's environment
        assert warm.shared_server_for(here) is server
        assert warm.shared_server_for({**here, "MLFLOW_TRACKING_URI": "x", "CUDA_VISIBLE_DEVICES": "1"}) is server
        assert "sets HF_HOME other than the shared" in warm.shared_server_for({**here, "HF_HOME": "/elsewhere"})
        assert "sets OMP_NUM_THREADS other than" in warm.shared_server_for({**here, "OMP_NUM_THREADS": "7"})
        set_by_imports = server.set_by_imports  # torch's TORCHINDUCTOR_CACHE_DIR, lm-eval's HF_XET_HIGH_PERFORMANCE, …
        assert "TORCHINDUCTOR_CACHE_DIR" in set_by_imports and "TORCHINDUCTOR_CACHE_DIR" not in server.environ
        unset = {key: value for key, value in here.items() if key not in set_by_imports}
        assert warm.shared_server_for({**unset, **set_by_imports}) is server  # what the run's own imports would set
        assert "TORCHINDUCTOR_CACHE_DIR" in warm.shared_server_for({**unset, "TORCHINDUCTOR_CACHE_DIR": "/elsewhere"})
        assert "does not answer" in shared_server.connect(str(started.folder / "none.sock"))
        sleeper.kill()
        sleeper.wait()
        assert process.wait(timeout=60) == 0, (started.folder / "server.log").read_text()
        assert not os.path.exists(path)  # its socket went with it
        with pytest.raises(OSError):
            server.start(str(tmp_path), step="all", log_path=str(tmp_path / "run.log"), env=here, cwd=None)
    finally:
        sleeper.kill()
        process.kill()
        started.stop()

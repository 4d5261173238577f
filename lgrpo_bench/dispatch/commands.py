"""The command one grid run executes, and how GPUs are handed out to runs on one machine.

A run is one worker process, started fresh (no state shared with the orchestrator)::

    python -m lgrpo_bench.runs <runs_dir>/<run_id>

which reads the resolved ``config.yaml`` the orchestrator wrote there and executes the run's lifecycle
(:func:`lgrpo_bench.runs.lifecycle.execute_run`): train (or resume, or skip a trained run), then evaluate in a
process of its own, then mark the run done.

A run that needs several GPUs trains under ``accelerate launch`` (TRL's supported multi-GPU path), one
process per GPU::

    python -m accelerate.commands.launch --num_processes 4 --num_machines 1 [--config_file ds.yaml]
        --main_process_port 29731 -m lgrpo_bench.runs <runs_dir>/<run_id>

``--config_file`` is the executor's ``accelerate_config`` (write one with ``accelerate config``: DeepSpeed
ZeRO, FSDP, mixed precision); without it accelerate runs plain data parallelism over the visible GPUs.
The port is chosen free on the node when the run starts, so several multi-GPU runs can share a node.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence

from lgrpo_bench.runs.lifecycle import WORKER_MODULE, worker_argv

__all__ = ["GpuPool", "free_port", "run_argv", "visible_gpus"]


def run_argv(run_dir: str, *, python: str | None = None, gpus: int = 0, accelerate_config: str | None = None,
             main_process_port: int | None = None) -> list[str]:
    """argv of a run's worker process; ``gpus`` > 1 goes through ``accelerate launch`` (see the module docstring)."""
    if gpus <= 1:
        return worker_argv(run_dir, python=python)
    argv = [python or sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(gpus), "--num_machines", "1"]
    if accelerate_config:
        argv += ["--config_file", str(accelerate_config)]
    if main_process_port is not None:
        argv += ["--main_process_port", str(main_process_port)]
    return argv + ["-m", WORKER_MODULE, str(run_dir)]


def free_port() -> int:
    """A TCP port free on this host right now (for ``accelerate launch --main_process_port``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """GPU ids this process may use: ``$CUDA_VISIBLE_DEVICES`` when set (indices or UUIDs), else ``nvidia-smi -L``."""
    environ = os.environ if environ is None else environ
    declared = environ.get("CUDA_VISIBLE_DEVICES")
    if declared is not None:
        return [item.strip() for item in declared.split(",") if item.strip() and item.strip() != "-1"]
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    if listing.returncode != 0:
        return []
    return [str(i) for i, line in enumerate(listing.stdout.splitlines()) if line.startswith("GPU ")]


class GpuPool:
    """Hands out GPUs to runs on one machine.

    Each GPU serves at most ``runs_per_gpu`` runs at once (1 = never shared). A request for ``n`` GPUs gets
    the ``n`` least-loaded GPUs that still have room (ties: the order given), or nothing when fewer than ``n``
    have room: the run waits for a release. Spreading runs over idle GPUs first means sharing only
    happens once every GPU is busy.
    """

    def __init__(self, devices: Sequence[str | int], runs_per_gpu: int = 1):
        if runs_per_gpu < 1:
            raise ValueError(f"runs_per_gpu must be at least 1, got {runs_per_gpu}")
        self.devices = [str(d) for d in devices]
        if len(set(self.devices)) != len(self.devices):
            raise ValueError(f"GPU ids repeat: {self.devices}")
        self.runs_per_gpu = runs_per_gpu
        self.load = {device: 0 for device in self.devices}

    def fits(self, n: int) -> bool:
        """Whether a run of ``n`` GPUs can ever be placed (on an idle pool)."""
        return n <= len(self.devices)

    def acquire(self, n: int) -> list[str] | None:
        if n < 0:
            raise ValueError(f"a run cannot need {n} GPUs")
        if n == 0:
            return []
        order = {device: i for i, device in enumerate(self.devices)}
        open_devices = sorted((d for d in self.devices if self.load[d] < self.runs_per_gpu),
                              key=lambda d: (self.load[d], order[d]))
        if len(open_devices) < n:
            return None
        chosen = sorted(open_devices[:n], key=order.__getitem__)
        for device in chosen:
            self.load[device] += 1
        return chosen

    def release(self, devices: Sequence[str]) -> None:
        for device in devices:
            if self.load.get(device, 0) <= 0:
                raise ValueError(f"GPU {device} released more often than acquired")
            self.load[device] -= 1

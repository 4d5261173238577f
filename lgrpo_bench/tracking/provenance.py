"""Where a run was computed: the hardware and software provenance tagged on train, warm-start and eval runs.

A chaotic training run lands elsewhere on another CPU (AVX2 and AVX-512 kernels round differently), so a result
carries the machine it came from and a report can say when a table mixes machines:

=============================  ================================================================================
``lgrpo.hardware``             one-line summary reports group by: ``cuda:<device name>x<count>`` when a GPU
                               computed the run, else ``cpu:<CPU model>:<torch CPU capability>``
``lgrpo.host.cpu``             CPU model (``/proc/cpuinfo`` "model name", else ``platform.processor()``)
``lgrpo.host.cpu_capability``  torch's CPU kernel level (``torch.backends.cpu.get_cpu_capability()``: DEFAULT,
                               AVX2, AVX512, ...)
``lgrpo.host.cuda_device``     name of CUDA device 0 (absent without CUDA)
``lgrpo.host.cuda_count``      CUDA devices visible to the process
``lgrpo.host.torch_threads``   torch's intra-op threads when the tags were taken
``lgrpo.host.processes``       processes of the run (``$WORLD_SIZE``, 1 for a plain process)
``lgrpo.host.name``            host name
``lgrpo.host.torch_build``     ``torch.__version__``, its CUDA version and whether MKL is in the build
=============================  ================================================================================

Package versions are in ``lgrpo.versions`` (:func:`~lgrpo_bench.tracking.schema.versions_tag_value`).
"""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

from lgrpo_bench.tracking.schema import (
    TAG_HARDWARE,
    TAG_HOST_CPU,
    TAG_HOST_CPU_CAPABILITY,
    TAG_HOST_CUDA_COUNT,
    TAG_HOST_CUDA_DEVICE,
    TAG_HOST_NAME,
    TAG_HOST_PROCESSES,
    TAG_HOST_TORCH_BUILD,
    TAG_HOST_TORCH_THREADS,
)

__all__ = ["cpu_model", "git_commit", "hardware_summary", "provenance_tags"]


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name, as the kernel reports it (``platform.processor()`` where there is no /proc)."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware_summary(cpu: str, capability: str, cuda_device: str | None, cuda_count: int) -> str:
    """``cuda:<device>x<count>`` when a GPU computes, else ``cpu:<model>:<capability>`` (see the module docstring)."""
    if cuda_device and cuda_count:
        return f"cuda:{cuda_device}x{cuda_count}"
    return f"cpu:{cpu}:{capability}"


def provenance_tags(*, use_cuda: bool | None = None) -> dict[str, str]:
    """The tags of the module docstring for this process (imports torch).

    ``use_cuda``: whether the run computes on CUDA (default: whether CUDA is available)."""
    import torch

    cpu = cpu_model()
    capability = torch.backends.cpu.get_cpu_capability()
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    use_cuda = bool(count) if use_cuda is None else use_cuda
    device = torch.cuda.get_device_name(0) if count else None
    mkl = torch.backends.mkl.is_available()
    tags = {
        TAG_HARDWARE: hardware_summary(cpu, capability, device if use_cuda else None, count if use_cuda else 0),
        TAG_HOST_CPU: cpu,
        TAG_HOST_CPU_CAPABILITY: capability,
        TAG_HOST_CUDA_COUNT: str(count),
        TAG_HOST_TORCH_THREADS: str(torch.get_num_threads()),
        TAG_HOST_PROCESSES: os.environ.get("WORLD_SIZE", "1") or "1",
        TAG_HOST_NAME: socket.gethostname(),
        TAG_HOST_TORCH_BUILD: f"{torch.__version__}; cuda {torch.version.cuda or 'none'}; mkl {'yes' if mkl else 'no'}",
    }
    if device:
        tags[TAG_HOST_CUDA_DEVICE] = device
    return tags


def git_commit() -> str:
    """HEAD of the checkout the package runs from (editable installs), else ``GIT_COMMIT_UNKNOWN``."""
    import subprocess

    from lgrpo_bench.tracking.schema import GIT_COMMIT_UNKNOWN

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or GIT_COMMIT_UNKNOWN
    except (OSError, subprocess.SubprocessError):
        return GIT_COMMIT_UNKNOWN

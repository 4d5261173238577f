"""Provenance tags: where a run computed (CPU model and kernel level, CUDA devices, threads, processes, torch build)."""

from __future__ import annotations

from lgrpo_bench.tracking.provenance import cpu_model, hardware_summary, provenance_tags
from lgrpo_bench.tracking.schema import (
    TAG_HARDWARE,
    TAG_HOST_CPU,
    TAG_HOST_CPU_CAPABILITY,
    TAG_HOST_CUDA_COUNT,
    TAG_HOST_CUDA_DEVICE,
    TAG_HOST_PROCESSES,
)


def test_the_cpu_model_comes_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC   7B13 64-Core Processor\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n")
    assert cpu_model(info) == "AMD EPYC 7B13 64-Core Processor"
    assert cpu_model(tmp_path / "missing")  # falls back to platform, never empty


def test_the_summary_names_the_device_that_computes():
    assert hardware_summary("Intel Xeon", "AVX512", None, 0) == "cpu:Intel Xeon:AVX512"
    assert hardware_summary("Intel Xeon", "AVX512", "NVIDIA H200", 8) == "cuda:NVIDIA H200x8"
    assert hardware_summary("AMD EPYC", "AVX2", "NVIDIA H200", 0) == "cpu:AMD EPYC:AVX2"


def test_tags_of_this_process(monkeypatch):
    import torch

    monkeypatch.setenv("WORLD_SIZE", "4")
    tags = provenance_tags()
    assert tags[TAG_HOST_CPU_CAPABILITY] == torch.backends.cpu.get_cpu_capability()
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0  # what torch reports on this host
    assert tags[TAG_HOST_CUDA_COUNT] == str(count)
    if count:  # a GPU host: by default the tags say CUDA computes, on device 0's name
        name = torch.cuda.get_device_name(0)
        assert tags[TAG_HARDWARE] == f"cuda:{name}x{count}" and tags[TAG_HOST_CUDA_DEVICE] == name
    else:
        assert tags[TAG_HARDWARE] == f"cpu:{tags[TAG_HOST_CPU]}:{tags[TAG_HOST_CPU_CAPABILITY]}"
        assert TAG_HOST_CUDA_DEVICE not in tags
    on_cpu = provenance_tags(use_cuda=False)  # a CPU computation is tagged cpu on any host
    assert on_cpu[TAG_HARDWARE] == f"cpu:{tags[TAG_HOST_CPU]}:{tags[TAG_HOST_CPU_CAPABILITY]}"
    assert tags[TAG_HOST_PROCESSES] == "4"
    assert all(key.startswith("lgrpo.") and value for key, value in tags.items())

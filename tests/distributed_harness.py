"""Run a function in N real ``torch.distributed`` processes (gloo backend, CPU) and collect what each returns.

    from distributed_harness import run_in_processes
    results = run_in_processes(worker, 2, payload)     # worker(rank, world_size, payload) in each process

Each process is forked from this test process's warm server (:func:`lgrpo_bench.runs.warm.forkserver_context`: torch,
transformers and TRL imported once, not once per process; ``tests/test_distributed.py``, 3 launches of 2 processes,
took 66-68 CPU-s with fresh interpreters and 16-25 forked, on the 2-core dev VM), joins one gloo process group over
TCP on 127.0.0.1, has the
environment ``accelerate`` reads for a multi-process CPU launch (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), so
an ``Accelerator`` (and TRL's trainers) built inside it sees P processes and uses the existing group; torch runs one
thread per process. ``worker`` must be importable (a module-level function); its return value must be picklable
(tensors included). An exception in any process is re-raised here with that process's traceback; a process that
hangs (a collective one rank skipped) fails the call after ``timeout_s``.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, worker: Callable, args: tuple, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
        try:
            result = ("ok", worker(rank, world_size, *args))
        finally:
            dist.destroy_process_group()
    except BaseException:  # noqa: BLE001  (reported to the parent with the traceback)
        result = ("error", traceback.format_exc())
    with open(out, "wb") as handle:
        pickle.dump(result, handle)


def run_in_processes(worker: Callable[..., Any], world_size: int, *args: Any, timeout_s: float = 600) -> list[Any]:
    """``[worker(rank, world_size, *args) for rank in range(world_size)]``, each in its own process of one group."""
    from lgrpo_bench.runs.warm import forkserver_context

    context = forkserver_context()
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        outs = [str(Path(folder) / f"rank{rank}.pkl") for rank in range(world_size)]
        processes = [context.Process(target=_entry, args=(rank, world_size, port, worker, args, outs[rank]))
                     for rank in range(world_size)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout_s)
        hung = [rank for rank, process in enumerate(processes) if process.is_alive()]
        for rank in hung:
            processes[rank].kill()
        if hung:
            raise TimeoutError(f"ranks {hung} of {world_size} did not finish within {timeout_s:.0f} s (a collective skipped?)")
        results = []
        for rank, (process, out) in enumerate(zip(processes, outs)):
            if not Path(out).exists():
                raise RuntimeError(f"rank {rank} exited with code {process.exitcode} without a result")
            with open(out, "rb") as handle:
                status, value = pickle.load(handle)
            if status == "error":
                raise RuntimeError(f"rank {rank} of {world_size} failed:\n{value}")
            results.append(value)
    return results

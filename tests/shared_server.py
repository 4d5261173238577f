"""A shared warm server for tests (:mod:`lgrpo_bench.runs.server`): started, waited for, stopped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SharedServerProcess:
    path: str
    """Its socket (what ``$LGRPO_WARM_SERVER`` names)."""
    process: subprocess.Popen
    folder: Path

    def stop(self) -> None:
        """SIGTERM (the server removes its socket and exits), then the folder."""
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_shared_server(env: dict[str, str] | None = None, *, exit_with: int | None = None) -> SharedServerProcess:
    """Start a server (in environment ``env``, default this process's) that stops when process ``exit_with`` (default
    this one) ends; returns once its socket is bound (it may still be importing: a command that connects meanwhile waits
    for its greeting)."""
    folder = Path(tempfile.mkdtemp(prefix="lgrpo-warm-"))  # private (0700) and short: a socket path has ≤ 107 bytes
    path = str(folder / "server.sock")
    with open(folder / "server.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "lgrpo_bench.runs.server", path, "--exit-with", str(exit_with or os.getpid())],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if not os.path.exists(path):
        process.kill()
        raise RuntimeError(f"the warm server did not start: {(folder / 'server.log').read_text()}")
    return SharedServerProcess(path, process, folder)

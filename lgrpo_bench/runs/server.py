"""A warm server that outlives one orchestrator: every local grid whose ``$LGRPO_WARM_SERVER`` names it forks its runs here.

    python -m lgrpo_bench.runs.server SOCKET [--exit-with PID]

The warm server of :mod:`.warm` lives as long as its orchestrator, so each ``lgrpo-bench run`` pays the heavy imports
once (torch, transformers, TRL, lm-eval, MLflow: ~5 CPU-s on a 2-core EPYC). Where many short grids follow one another
— a session of small experiments, the project's own end-to-end tests (~110 grids per test run) — this server imports
once for all of them: it binds ``SOCKET`` (a Unix socket, in a folder only this user may enter), imports
:mod:`lgrpo_bench.runs.preload` with the collector discipline, and then forks one child per request. A local grid uses
it when ``$LGRPO_WARM_SERVER`` names it, the server runs this interpreter and this copy of the package, and the run's
import-time environment equals the server's (:func:`lgrpo_bench.runs.warm.warm_refusal`'s rule; a variable the
server's imports set themselves, such as torch's ``TORCHINDUCTOR_CACHE_DIR``, may be in the run's environment at that
value); otherwise the grid starts its own server, as without the variable. Ray workers and SLURM jobs keep their own (:mod:`.warm`).

The run forked here is the run forked by a grid's own server, with the same guarantees: :func:`.child.run_in_child`
makes it its own session, SIGKILLs it when the orchestrator that asked for it ends (a pidfd) and asks the kernel to
SIGKILL it when this server dies (``PR_SET_PDEATHSIG``); its memory is returned when it exits. Its exit code reaches
the orchestrator over the request's connection (:class:`SharedProcess`); when the server dies first the connection
closes and the run, killed with it, reads as killed by SIGKILL.

Protocol, one connection per request, each message a pickle behind its 4-byte length: the server greets with
``{"pid", "executable", "package", "environ", "set_by_imports", "fork_problems"}`` once its imports are done (a
client that connects while it imports waits); the client sends ``{"run_dir", "step", "log_path", "env", "cwd",
"starter_pid"}`` (or closes: a probe); the server answers ``{"pid"}`` at the fork and ``{"exitcode"}`` (negative: the
signal) when the child ends. Only processes of the server's own user are served (``SO_PEERCRED``). The server stops
on SIGTERM or SIGINT, when the process ``--exit-with`` names ends, or when its socket file is removed; its children
die with it.
"""

from __future__ import annotations

import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["SERVER_ENV", "SharedProcess", "SharedServer", "connect", "forget", "serve"]

SERVER_ENV = "LGRPO_WARM_SERVER"
"""The socket of a running :mod:`lgrpo_bench.runs.server`; local grids fork their runs there when they can."""
_HEADER = struct.Struct("!I")
_GREETING_WAIT_S = 300.0
"""How long a client waits for the greeting of a server that is still importing."""


def _send(sock: socket.socket, message: dict) -> None:
    data = pickle.dumps(message)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _receive(sock: socket.socket) -> dict | None:
    """The next message, or None when the other end closed the connection."""
    header = _read_exactly(sock, _HEADER.size)
    if header is None:
        return None
    body = _read_exactly(sock, _HEADER.unpack(header)[0])
    return None if body is None else pickle.loads(body)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        try:
            chunk = sock.recv(left)
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------------------------
# The client: an orchestrator's view of the server
# ---------------------------------------------------------------------------------------------------------------
class SharedServer:
    """A server that greeted us: ``path``, ``pid``, ``environ`` (the server's environment, which its imports read),
    ``set_by_imports`` (variables its imports set themselves, e.g. torch's ``TORCHINDUCTOR_CACHE_DIR``)."""

    def __init__(self, path: str, greeting: dict):
        self.path = path
        self.pid: int = greeting["pid"]
        self.environ: dict[str, str] = greeting["environ"]
        self.set_by_imports: dict[str, str] = greeting["set_by_imports"]
        self.fork_problems: list[str] = greeting["fork_problems"]

    def start(self, run_dir: str | Path, *, step: str, log_path: str | Path, env: Mapping[str, str],
              cwd: str | None) -> SharedProcess:
        """Fork the worker of the run in ``run_dir`` there (what :func:`lgrpo_bench.runs.warm.start_warm` does with a
        grid's own server). Raises OSError when the server is gone or refuses."""
        sock = _connect(self.path, timeout_s=_GREETING_WAIT_S)
        try:
            if _receive(sock) is None:
                raise ConnectionError(f"the warm server at {self.path} closed the connection")
            _send(sock, {"run_dir": str(run_dir), "step": step, "log_path": str(log_path), "env": dict(env),
                         "cwd": cwd, "starter_pid": os.getpid()})
            answer = _receive(sock)
            if answer is None or "pid" not in answer:
                raise ConnectionError(f"the warm server at {self.path} did not fork the run: {answer}")
        except BaseException:
            sock.close()
            raise
        return SharedProcess(sock, answer["pid"], self.pid)


class SharedProcess:
    """A run's process forked by the shared server, with the interface of ``subprocess.Popen`` the jobs use: ``pid``,
    ``wait(timeout)`` (the exit code, or None while it runs), ``returncode`` (negative: killed by that signal)."""

    def __init__(self, sock: socket.socket, pid: int, server_pid: int):
        self._sock = sock
        self.pid = pid
        self.server_pid = server_pid
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is not None:
            return self.returncode
        import select

        if not select.select([self._sock], [], [], timeout)[0]:
            return None
        message = _receive(self._sock)
        self._sock.close()
        # The server closed the connection without a word: it died, and the run died with it (PR_SET_PDEATHSIG).
        self.returncode = -signal.SIGKILL if message is None else int(message["exitcode"])
        return self.returncode


def _connect(path: str, *, timeout_s: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


_servers: dict[str, SharedServer | str] = {}


def connect(path: str | None = None) -> SharedServer | str:
    """The server named by ``path`` (default ``$LGRPO_WARM_SERVER``), or why it cannot serve this process: unset,
    not answering, another interpreter, another copy of lgrpo_bench. Asked once per process and path."""
    path = path if path is not None else os.environ.get(SERVER_ENV, "").strip()
    if not path:
        return f"${SERVER_ENV} is not set"
    if path not in _servers:
        _servers[path] = _greet(path)
    return _servers[path]


def forget(path: str, why: str) -> None:
    """Ask no more of the server at ``path`` in this process (it stopped answering)."""
    _servers[path] = why


def _greet(path: str) -> SharedServer | str:
    import lgrpo_bench

    try:
        with _connect(path, timeout_s=_GREETING_WAIT_S) as sock:
            greeting = _receive(sock)
    except OSError as error:
        return f"the warm server at {path} does not answer ({error.strerror or error})"
    if greeting is None:
        return f"the warm server at {path} closed the connection"
    if os.path.realpath(greeting["executable"]) != os.path.realpath(sys.executable):
        return f"the warm server at {path} runs another interpreter ({greeting['executable']})"
    if greeting["package"] != os.path.dirname(os.path.abspath(lgrpo_bench.__file__)):
        return f"the warm server at {path} runs another copy of lgrpo_bench ({greeting['package']})"
    return SharedServer(path, greeting)


# ---------------------------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------------------------
def serve(path: str, *, exit_with: int | None = None) -> None:
    """Bind ``path``, import what runs use, fork one run per request until stopped (see the module docstring)."""
    import lgrpo_bench
    from lgrpo_bench.procs import LIBRARY_ENV_DEFAULTS, imports_kept_out_of_gc

    for key, value in LIBRARY_ENV_DEFAULTS.items():  # the environment a command imports in (lgrpo_bench.cli)
        os.environ.setdefault(key, value)

    folder = os.path.dirname(os.path.abspath(path))
    if os.stat(folder).st_mode & 0o077:
        raise SystemExit(f"error: {folder}: the warm server's folder must be private to its user (chmod 700)")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)  # before the imports: clients that connect meanwhile wait for the greeting
    listener.listen(64)
    identity = os.stat(path).st_ino
    environ = dict(os.environ)  # as the imports found it (some libraries add variables while they import)
    with imports_kept_out_of_gc():
        from lgrpo_bench.runs import preload
    greeting = {"pid": os.getpid(), "executable": sys.executable,
                "package": os.path.dirname(os.path.abspath(lgrpo_bench.__file__)), "environ": environ,
                "set_by_imports": {key: value for key, value in os.environ.items() if key not in environ},
                "fork_problems": list(preload.FORK_PROBLEMS)}

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stop = []
    signal.signal(signal.SIGCHLD, lambda *_: None)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _frame: stop.append(signum))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "signal")
    watched = os.pidfd_open(exit_with) if exit_with else None
    if watched is not None:
        selector.register(watched, selectors.EVENT_READ, "exit-with")
    waiting: dict[socket.socket, None] = {}  # greeted, request not yet read
    children: dict[int, socket.socket] = {}
    uid = os.getuid()
    try:
        while not stop:
            for key, _ in selector.select(timeout=5.0):
                if key.data == "accept":
                    conn, _ = listener.accept()
                    peer_uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                   struct.calcsize("3i")))[1]
                    if peer_uid != uid:
                        conn.close()
                        continue
                    try:
                        _send(conn, greeting)
                    except OSError:
                        conn.close()
                        continue
                    waiting[conn] = None
                    selector.register(conn, selectors.EVENT_READ, "request")
                elif key.data == "request":
                    conn = key.fileobj
                    selector.unregister(conn)
                    del waiting[conn]
                    conn.settimeout(10.0)
                    try:
                        request = _receive(conn)
                    except (OSError, pickle.UnpicklingError, EOFError):
                        request = None
                    if request is None:  # a probe, or a client that went away
                        conn.close()
                        continue
                    pid = os.fork()
                    if pid == 0:
                        selector.close()
                        _child(request, [listener, conn, *waiting, *children.values()], [wake_r, wake_w, watched])
                    children[pid] = conn
                    try:
                        _send(conn, {"pid": pid})
                    except OSError:
                        pass  # the orchestrator is gone: the run kills itself (it watches the orchestrator)
                elif key.data == "signal":
                    os.read(wake_r, 4096)
                else:  # the process we live for ended
                    stop.append("exit-with")
            _reap(children)
            if not stop and not _same_file(path, identity):
                stop.append("socket removed")
    finally:
        listener.close()
        if _same_file(path, identity):
            os.unlink(path)


def _reap(children: dict[int, socket.socket]) -> None:
    """Every ended child's exit code to the orchestrator that asked for it."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        try:
            conn.settimeout(5.0)
            _send(conn, {"exitcode": os.waitstatus_to_exitcode(status)})
        except OSError:
            pass
        conn.close()


def _same_file(path: str, identity: int) -> bool:
    try:
        return os.stat(path).st_ino == identity
    except OSError:
        return False


def _child(request: dict, sockets: list[socket.socket], fds: list[int | None]) -> None:
    """In the forked child: shed the server's signal handling and descriptors, then become the run's process."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        for sock in sockets:
            sock.close()
        for fd in fds:
            if fd is not None:
                os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        from lgrpo_bench.runs.child import run_in_child

        run_in_child(request["run_dir"], request["step"], request["log_path"], request["env"], request["cwd"],
                      request["starter_pid"])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # noqa: BLE001 - the child must end here, never return into the server's loop
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lgrpo_bench.runs.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("socket", help="the Unix socket to listen on (its folder must be private to this user)")
    parser.add_argument("--exit-with", type=int, metavar="PID", help="stop when process PID ends")
    args = parser.parse_args(argv)
    started = time.time()
    serve(args.socket, exit_with=args.exit_with)
    print(f"warm server {os.getpid()} stopped after {time.time() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

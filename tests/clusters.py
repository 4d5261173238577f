"""Real clusters for the tests: a single-node SLURM cluster (munged + slurmctld + slurmd on localhost), a Ray
cluster (``ray start --head`` plus a second ``ray start --address`` node on this host) and an MLflow tracking
server, each started in a temporary folder on free ports and stopped by its own process ids.

Nothing here is a stand-in: the daemons are Debian's ``slurm-wlm`` and ``munge`` and the ``ray`` / ``mlflow``
command-line tools of the virtual environment. :func:`ensure_slurm_installed` installs ``slurm-wlm`` and
``munge`` with apt when they are missing (root only); when that is impossible it returns the reason, which
the fixtures turn into a skip.

SLURM set-up (``slurm.conf`` written by :class:`SlurmCluster`): one partition, one node named after this host
at 127.0.0.1, ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``, ``SelectType=select/cons_tres``
with CPUs as the only consumable resource, ``SlurmdParameters=config_overrides`` so the node may declare more
CPUs than the machine has (4 on this 2-core machine: array parallelism, not the core count, must be what limits
concurrency), no accounting database (``sacct`` does not work; ended jobs stay visible to ``squeue --states=all``
for ``MinJobAge`` seconds) and a job-completion log (``jobcomp/filetxt``) that records every job's start and
end time. Munge uses its own key and socket (``AuthInfo=socket=...``), so nothing of the machine's set-up is used
or changed. Client commands find the cluster through ``$SLURM_CONF``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

SLURM_COMMANDS = ("slurmctld", "slurmd", "munged", "sbatch", "srun", "squeue", "scancel", "scontrol")
APT_PACKAGES = ("slurm-wlm", "munge")
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CLUSTER_LOG_ENV = "LGRPO_CLUSTER_LOG"
"""A file that :func:`log` appends to as well (``.ci/run`` prints it at the end: pytest captures the output of
passing tests)."""


def log(line: str) -> None:
    """A line for the test log: when a cluster starts, what runs on it, when it stops (stderr, and the file
    named by ``$LGRPO_CLUSTER_LOG``)."""
    text = f"[clusters {time.strftime('%H:%M:%S')}] {line}"
    print(text, file=sys.stderr, flush=True)
    path = os.environ.get(CLUSTER_LOG_ENV)
    if path:
        with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")


def slurm_command(name: str) -> str | None:
    """Full path of a SLURM or munge command (daemons live in /usr/sbin, often not on a user's PATH)."""
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _missing_slurm() -> list[str]:
    return [name for name in SLURM_COMMANDS if slurm_command(name) is None]


def ensure_slurm_installed() -> str | None:
    """Install ``slurm-wlm`` and ``munge`` with apt when a command is missing; None when ready, else why not."""
    missing = _missing_slurm()
    if not missing:
        return None
    if os.geteuid() != 0:
        return f"SLURM is not installed ({', '.join(missing)} missing) and installing it needs root (apt-get install slurm-wlm munge)"
    if shutil.which("apt-get") is None:
        return f"SLURM is not installed ({', '.join(missing)} missing) and there is no apt-get to install it"
    log(f"installing {' '.join(APT_PACKAGES)} with apt-get ({', '.join(missing)} missing)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *APT_PACKAGES]):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            return f"{' '.join(argv)} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}"
    missing = _missing_slurm()
    return f"apt-get installed {' '.join(APT_PACKAGES)} but {', '.join(missing)} are still missing" if missing else None


def _wait_for(condition, what: str, timeout_s: float = START_TIMEOUT_S, processes: dict[str, subprocess.Popen] | None = None,
              logs: list[Path] = ()) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for name, process in (processes or {}).items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode} while waiting for {what}:\n{_tails(logs)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}:\n{_tails(logs)}")
        time.sleep(0.2)


def _tails(logs) -> str:
    parts = []
    for path in logs:
        with contextlib.suppress(OSError):
            parts.append(f"--- {path}\n" + Path(path).read_text(errors="replace")[-3000:])
    return "\n".join(parts)


def _stop_process(process: subprocess.Popen, name: str, grace_s: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {process.pid}) ignored SIGTERM for {grace_s:.0f} s: SIGKILL")
        process.kill()
        process.wait(timeout=10)


from test_faults import alive as pid_alive, processes_mentioning  # noqa: E402  (one copy of the /proc scans)


# ---------------------------------------------------------------------------------------------------------
# SLURM
# ---------------------------------------------------------------------------------------------------------
class SlurmCluster:
    """A single-node SLURM cluster in ``root`` (see the module docstring). ``env`` has ``SLURM_CONF``."""

    def __init__(self, root: Path, *, cpus: int = 4, kill_wait_s: int = 10, min_job_age_s: int = 600):
        self.root = root
        self.cpus = cpus
        self.kill_wait_s = kill_wait_s
        self.min_job_age_s = min_job_age_s
        self.node = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.jobcomp = root / "jobcomp.log"
        self.munge_socket = root / "munge" / "munge.socket"
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o700)
        ctld_port, slurmd_port = free_port(), free_port()
        lines = {
            "ClusterName": "lgrpotest",
            "SlurmctldHost": f"{self.node}(127.0.0.1)",
            "SlurmctldPort": ctld_port,
            "SlurmdPort": slurmd_port,
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": self.root / "state",
            "SlurmdSpoolDir": self.root / "spool",
            "SlurmctldPidFile": self.root / "slurmctld.pid",
            "SlurmdPidFile": self.root / "slurmd.pid",
            "SlurmctldLogFile": self.root / "log" / "slurmctld.log",
            "SlurmdLogFile": self.root / "log" / "slurmd.log",
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_CPU",
            "SchedulerType": "sched/backfill",
            "SlurmdParameters": "config_overrides",
            "MpiDefault": "none",
            "ReturnToService": 2,
            "AccountingStorageType": "accounting_storage/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "JobCompType": "jobcomp/filetxt",
            "JobCompLoc": self.jobcomp,
            "KillWait": self.kill_wait_s,
            "MinJobAge": self.min_job_age_s,
            "InactiveLimit": 0,
            "SlurmdTimeout": 300,
            "MaxArraySize": 1001,
        }
        text = "".join(f"{key}={value}\n" for key, value in lines.items())
        text += f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=1000 State=UNKNOWN\n"
        text += f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n"
        self.conf.write_text(text)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)

    def _spawn(self, name: str, argv: list[str]) -> None:
        argv = [slurm_command(argv[0]) or argv[0], *argv[1:]]
        out = open(self.root / "log" / f"{name}.out", "ab")
        self.processes[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                env=self.env, start_new_session=True)
        out.close()
        log(f"started {name} (pid {self.processes[name].pid}): {' '.join(argv)}")

    def start(self) -> SlurmCluster:
        started = time.monotonic()
        self._write_config()
        munge = self.root / "munge"
        self._spawn("munged", ["munged", "--foreground", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={munge / 'munge.key'}", f"--pid-file={munge / 'munged.pid'}",
                               f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}"])
        logs = [self.root / "log" / "slurmctld.log", self.root / "log" / "slurmd.log", munge / "munged.log"]
        _wait_for(self.munge_socket.exists, "munged's socket", processes=self.processes, logs=logs)
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        _wait_for(lambda: self._quiet(["scontrol", "ping"]) and "UP" in self._out(["scontrol", "ping"]),
                  "slurmctld to answer", processes=self.processes, logs=logs)
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf)])
        _wait_for(lambda: self._out(["sinfo", "-h", "-N", "-o", "%t"]).strip() in ("idle", "mix", "alloc"),
                  "the node to be idle", processes=self.processes, logs=logs)
        log(f"SLURM cluster up in {time.monotonic() - started:.1f} s: node {self.node} with {self.cpus} CPUs, "
            f"SLURM_CONF={self.conf}; sinfo: {self._out(['sinfo', '-h', '-N', '-o', '%N %t %c']).strip()}")
        return self

    def _out(self, argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=30)
        return done.stdout if done.returncode == 0 else ""

    def _quiet(self, argv: list[str]) -> bool:
        return subprocess.run(argv, capture_output=True, env=self.env, timeout=30).returncode == 0

    def squeue(self) -> list[dict[str, str]]:
        """Every job slurmctld knows (pending, running, and ended ones younger than MinJobAge), array tasks
        one per line: id, state, reason."""
        out = self._out(["squeue", "-h", "-r", "--states=all", "-o", "%i|%T|%r"])
        return [dict(zip(("id", "state", "reason"), line.split("|"))) for line in out.splitlines() if line.strip()]

    def running_jobs(self) -> set[str]:
        return {job["id"] for job in self.squeue() if job["state"] in ("RUNNING", "COMPLETING")}

    def jobcomp_records(self) -> list[dict[str, str]]:
        """The job-completion log: one dict per ended job (JobId, JobState, StartTime, EndTime, ...)."""
        try:
            text = self.jobcomp.read_text()
        except OSError:
            return []
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in text.splitlines() if line.strip()]

    def scancel(self, job_id: str) -> None:
        subprocess.run(["scancel", job_id], check=True, env=self.env, timeout=30)
        log(f"scancel {job_id}")

    def cancel_all(self, timeout_s: float = 60.0) -> None:
        """Cancel every job and wait until none is pending, running or completing."""
        subprocess.run(["scancel", "--full", "--partition=debug"], capture_output=True, env=self.env, timeout=30)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not any(job["state"] in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED")
                       for job in self.squeue()):
                return
            time.sleep(0.5)
        log(f"jobs still active after {timeout_s:.0f} s: {self.squeue()}")

    def stop(self) -> None:
        """Cancel what is left, then stop slurmd, slurmctld and munged by their pids (SIGTERM, SIGKILL after 15 s)."""
        if self.processes.get("slurmctld") and self.processes["slurmctld"].poll() is None:
            self.cancel_all()
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is not None:
                _stop_process(process, name)
                log(f"stopped {name} (pid {process.pid}, exit {process.returncode})")
        leftovers = self.step_daemons()
        for pid in leftovers:  # job steps outlive slurmd by design: none should be left after cancel_all
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if leftovers:
            log(f"killed {len(leftovers)} leftover slurmstepd processes of the cluster: {leftovers}")

    def step_daemons(self) -> list[int]:
        """Live ``slurmstepd`` processes of this cluster (their environment names its ``SLURM_CONF``)."""
        marker = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _comm(int(entry.name)) == "slurmstepd" and pid_alive(int(entry.name)):
                with contextlib.suppress(OSError):
                    if marker in (entry / "environ").read_bytes().split(b"\0"):
                        found.append(int(entry.name))
        return found


@contextlib.contextmanager
def slurm_cluster(root: Path, **kwargs) -> Iterator[SlurmCluster]:
    cluster = SlurmCluster(root, **kwargs)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


# ---------------------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------------------
class RayCluster:
    """``ray start --head`` plus ``ray start --address`` worker nodes on this host, in a short temporary folder
    (Unix socket paths are limited to 107 characters), stopped by killing the processes whose command line
    names that folder (``ray stop`` would stop every Ray on the machine, other sessions' too).

    Token authentication is on, with a token of its own (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN_PATH`` in the
    folder): Ray ≥ 2.5x turns it on for a head whenever ``~/.ray/auth_token`` exists, and then every node and
    driver needs the token; ``env`` carries it (and ``RAY_ADDRESS``) to the processes a test starts."""

    def __init__(self, *, head_cpus: int = 1, worker_cpus: tuple[int, ...] = (1,)):
        import secrets

        self.root = Path(tempfile.mkdtemp(prefix="lgrpo-ray-", dir="/tmp"))
        self.head_cpus = head_cpus
        self.worker_cpus = worker_cpus
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        token = self.root / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN_PATH": str(token), "RAY_ADDRESS": self.address}
        self.env.pop("RAY_AUTH_TOKEN", None)

    def _ray(self, *args: str) -> None:
        argv = [str(Path(sys.executable).with_name("ray")), "start", *args]
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")

    def start(self) -> RayCluster:
        started = time.monotonic()
        # No log monitor: the executor's driver joins with log_to_driver=False, so nothing reads what it would push
        # (it polls every worker's log files: ~9 CPU-s over the cluster test).
        common = ["--disable-usage-stats", "--object-store-memory", str(128 * 1024**2), "--num-gpus", "0",
                  "--include-log-monitor=false"]
        self._ray("--head", f"--port={self.port}", f"--num-cpus={self.head_cpus}", "--include-dashboard=false",
                  f"--temp-dir={self.root}", "--node-ip-address=127.0.0.1", f"--ray-client-server-port={free_port()}",
                  f"--dashboard-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}", *common)
        log(f"ray head up at {self.address} ({self.head_cpus} CPUs, temp dir {self.root})")
        for cpus in self.worker_cpus:
            self._ray(f"--address={self.address}", f"--num-cpus={cpus}", "--node-ip-address=127.0.0.1",
                      f"--temp-dir={self.root}", f"--dashboard-agent-listen-port={free_port()}", *common)
        _wait_for(lambda: len(self.nodes()) == 1 + len(self.worker_cpus), "every Ray node to register")
        log(f"Ray cluster up in {time.monotonic() - started:.1f} s: {len(self.nodes())} nodes "
            f"{[(n['pid'], n['cpus']) for n in self.nodes()]} (raylet pid, CPUs)")
        return self

    def raylets(self) -> list[int]:
        """Raylet pids of this cluster, the head's first (oldest first)."""
        pids = [pid for pid in processes_mentioning(str(self.root)) if _comm(pid) == "raylet"]
        return sorted(pids, key=_start_ticks)

    def nodes(self) -> list[dict]:
        """Live raylets with their CPU count (from their command line)."""
        found = []
        for pid in self.raylets():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            resources = next((arg.split("=", 1)[1] for arg in cmdline if arg.startswith("--static_resource_list=")), "")
            items = resources.split(",")
            cpus = dict(zip(items[::2], items[1::2])).get("CPU", "?")
            found.append({"pid": pid, "cpus": cpus})
        return found

    def processes(self) -> list[int]:
        """Processes of this cluster: those naming its folder, and the head's client server (it names only the
        head's port)."""
        return sorted(set(processes_mentioning(str(self.root))) | {
            pid for pid in processes_mentioning(f":{self.port} ") if "ray" in _cmdline(pid)} | _holding_files_under(self.root))

    def stop(self) -> None:
        pids = self.processes()
        for signum in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
            deadline = time.monotonic() + 3  # nothing to keep: the test is over (some Ray agents ignore SIGTERM for 10 s)
            while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
                time.sleep(0.2)
            pids = [pid for pid in pids if pid_alive(pid)]
            if not pids:
                break
        log(f"Ray cluster stopped: {len(self.processes())} of its processes left")
        shutil.rmtree(self.root, ignore_errors=True)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _holding_files_under(root: Path) -> set[int]:
    """Live processes with a file open under ``root``: a raylet's agents (dashboard, runtime env) rename their command
    line and outlive a raylet killed by a test, but keep their logs in the cluster's folder open."""
    prefix = str(root) + "/"
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd).startswith(prefix) for fd in (entry / "fd").iterdir()):
                found.add(int(entry.name))
        except OSError:
            continue
    return {pid for pid in found if pid_alive(pid)}


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


# ---------------------------------------------------------------------------------------------------------
# MLflow tracking server
# ---------------------------------------------------------------------------------------------------------
class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a SQLite backend and a local artifact root in ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        started = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(self.port),
                "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
                "--artifacts-destination", str(self.root / "artifacts"), "--workers", "1"]
        out = open(self.root / "server.log", "ab")
        # MLflow's job runner (huey consumers for GenAI jobs) is not what a grid uses; off, the server spends ~25 s less
        # CPU in a test (measured on the 2-core dev machine)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, env=env)
        out.close()
        log(f"started mlflow server (pid {self.process.pid}) at {self.uri}")
        _wait_for(self._healthy, "the MLflow server", timeout_s=120, processes={"mlflow server": self.process},
                  logs=[self.root / "server.log"])
        log(f"mlflow server answers after {time.monotonic() - started:.1f} s")
        return self

    def _healthy(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)  # the server and its gunicorn/uvicorn workers
        try:
            self.process.wait(timeout=3)  # nothing to keep: the test is over
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        log(f"stopped mlflow server (pid {self.process.pid}, exit {self.process.returncode})")


def dump(obj) -> str:
    return json.dumps(obj, indent=1, default=str)

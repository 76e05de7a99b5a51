"""A real single-node SLURM cluster on this machine, for the tests (tests/test_slurm.py).

Debian's Slurm 22.05 (``slurm-wlm``, ``munge``) with accounting (``slurmdbd`` on a private
MariaDB): packages are installed if missing, every daemon is started by hand (package
scripts cannot start services here) and stopped again by its PID, and every address is
the loopback. The config must live at ``/etc/slurm/slurm.conf``: the executor plugin's job
step clears every ``SLURM_*`` variable (``SLURM_CONF`` too) before its inner ``srun``. Any
file it writes under ``/etc/slurm`` is put back as it was on the way out.

By hand (the cluster, with two stand-in GPUs, stays up until Ctrl-C)::

    python tests/slurm_cluster.py
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ETC = Path("/etc/slurm")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")  # slurmdbd's peers always use this one
PACKAGES = ("slurm-wlm", "munge", "slurmdbd", "mariadb-server")
DAEMONS = ("slurmctld", "slurmd", "slurmdbd")
CONFIGS = ("slurm.conf", "slurmdbd.conf", "gres.conf")
HEADER = "# written by tests/slurm_cluster.py"
CLUSTER = "mindskip"
PARTITION = "debug"
ACCOUNT = "mindskip"


class ClusterError(RuntimeError):
    """The cluster did not come up; the message ends with the daemons' last log lines."""


def why_unavailable() -> str | None:
    """Why a cluster cannot be made here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"a SLURM test cluster needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "a SLURM test cluster needs root (to install packages and write /etc/slurm)"
    missing = [tool for tool in ("apt-get", "dpkg-query") if shutil.which(tool) is None]
    if missing:
        return f"a SLURM test cluster needs Debian's packages ({', '.join(missing)} not found)"
    running = {name: _pids_of(name) for name in DAEMONS if _pids_of(name)}
    if running:
        pids = ", ".join(f"{name} {pids}" for name, pids in running.items())
        return (
            f"SLURM daemons already run here ({pids}); not touching them "
            "(if a killed test run left them, stop those PIDs and run again)"
        )
    return None


def missing_packages() -> list[str]:
    """The packages of PACKAGES that dpkg does not list as installed."""
    missing = []
    for pkg in PACKAGES:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True
        )
        if proc.returncode != 0 or "install ok installed" not in proc.stdout:
            missing.append(pkg)
    return missing


def install_packages(timeout: float = 600) -> list[str]:
    """Install what is missing (apt-get, non-interactive); returns what was installed."""
    missing = missing_packages()
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        ):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
            if proc.returncode != 0:
                raise ClusterError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr}")
    return missing


@dataclass
class Cluster:
    """A running cluster: where its files are, and the settings jobs must use."""

    root: Path
    node: str
    cpus: int
    memory_mb: int
    partition: str = PARTITION
    account: str = ACCOUNT
    pids: dict[str, int] = field(default_factory=dict)

    def sacct(self, *fields: str) -> list[dict[str, str]]:
        """Every job allocation accounting knows of (no steps), one dict per job."""
        out = run(
            ["sacct", "-a", "-X", "-n", "-P", "-S", "2000-01-01", f"--format={','.join(fields)}"]
        )
        return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]


def run(cmd: list[str], timeout: float = 30, check: bool = True) -> str:
    """Run a command; its stdout, or ClusterError with its output when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise ClusterError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return proc.stdout


def _pids_of(name: str) -> list[int]:
    """PIDs of processes whose executable name is ``name`` (read from /proc)."""
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                pids.append(int(comm.parent.name))
        except OSError:
            continue
    return pids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ready, timeout: float, logs: list[Path]) -> None:
    """Poll ``ready()`` until it is true; on timeout raise with the daemons' log tails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.3)
    tails = "".join(
        f"\n--- {p.name}:\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
        for p in logs
        if p.exists()
    )
    raise ClusterError(f"{what} not ready after {timeout:.0f} s{tails}")


def _ok(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(pid: int, timeout: float = 15) -> None:
    """SIGTERM one process, SIGKILL it if it outlives ``timeout``, and reap it."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            break
        time.sleep(0.2)
    else:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@contextmanager
def _restored(*paths: Path) -> Iterator[None]:
    """Put each file back as it was (bytes and mode), or remove it if it did not exist.

    A copy waits beside each file (``NAME.mindskip-saved``) until it is put back, so that a
    run killed before its teardown is undone by the next one.
    """
    for path in paths:
        _undo_killed_run(path)
    for path in paths:
        if path.exists():
            shutil.copy2(path, _saved(path))
    try:
        yield
    finally:
        for path in paths:
            if _saved(path).exists():
                os.replace(_saved(path), path)
            else:
                path.unlink(missing_ok=True)


def _saved(path: Path) -> Path:
    return path.with_name(path.name + ".mindskip-saved")


def _undo_killed_run(path: Path) -> None:
    """Put back a file that a killed run left replaced (or remove the one it wrote)."""
    if _saved(path).exists():
        os.replace(_saved(path), path)
    elif path.exists() and path.read_text(errors="replace").startswith(HEADER):
        path.unlink()


class _Daemons:
    """Processes this module started, each stopped by its PID (last started, first)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs: list[subprocess.Popen] = []
        self.pids = pids

    def start(self, name: str, cmd: list[str], log: Path, **kwargs) -> None:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )
        self.procs.append(proc)
        self.pids[name] = proc.pid

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc.pid)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def node_line() -> tuple[str, int, int]:
    """(node name, CPUs, memory in MB to offer) from ``slurmd -C``."""
    fields = dict(kv.split("=", 1) for kv in run(["slurmd", "-C"]).split()[:-1] if "=" in kv)
    memory = int(fields["RealMemory"])
    # leave room for the host; slurmd drains a node that has less than it was told
    return fields["NodeName"], int(fields["CPUs"]), int(memory * 0.85)


def slurm_conf(
    root: Path, node: str, cpus: int, memory_mb: int, ports: dict[str, int], gpus: int = 0
) -> str:
    gres = f" Gres=gpu:{gpus}" if gpus else ""
    return f"""{HEADER} (restored when the test cluster stops)
ClusterName={CLUSTER}
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ports["ctld"]}
SlurmdPort={ports["slurmd"]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={ports["dbd"]}
AccountingStorageEnforce=associations
JobCompType=jobcomp/none
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
GresTypes=gpu
InactiveLimit=0
KillWait=5
MinJobAge=300
Waittime=0
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb}{gres} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def gres_conf(root: Path, node: str, gpus: int) -> str:
    """Stand-in GPUs: character devices like /dev/null, which Slurm schedules and binds
    (jobs see CUDA_VISIBLE_DEVICES) while the jobs compute on the CPU."""
    for i in range(gpus):
        dev = root / f"fakegpu{i}"
        if not dev.exists():  # a character device like /dev/null, so Slurm binds it as a GPU
            os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return f"{HEADER}\nNodeName={node} Name=gpu File={root}/fakegpu[0-{gpus - 1}]\n"


def slurmdbd_conf(root: Path, node: str, ports: dict[str, int]) -> str:
    return f"""{HEADER} (removed when the test cluster stops)
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost={node}
DbdPort={ports["dbd"]}
SlurmUser=root
LogFile={root}/slurmdbd.log
PidFile={root}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={ports["mysql"]}
StorageUser=root
StorageLoc=slurm_acct_db
"""


def _start_munge(daemons: _Daemons, root: Path) -> None:
    """Reuse a munged that answers on the default socket, else start one as user munge."""
    if _ok(["sh", "-c", "munge -n | unmunge"]):
        return
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        run(["mungekey", "--create", f"--keyfile={key}"])
        shutil.chown(key, "munge", "munge")
    for d in (MUNGE_SOCKET.parent, Path("/var/lib/munge"), Path("/var/log/munge")):
        d.mkdir(parents=True, exist_ok=True)
        shutil.chown(d, "munge", "munge")
    daemons.start(
        "munged",
        ["munged", "--foreground", f"--socket={MUNGE_SOCKET}"],
        root / "munged.log",
        user="munge",
        group="munge",
    )
    _wait("munged", lambda: _ok(["sh", "-c", "munge -n | unmunge"]), 20, [root / "munged.log"])


def _start_mariadb(daemons: _Daemons, root: Path, port: int) -> None:
    """A private MariaDB for slurmdbd only: its own data folder, 127.0.0.1, no grants."""
    data = root / "mysql"
    log = root / "mariadb.log"
    run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root"],
        timeout=120,
    )
    daemons.start(
        "mariadbd",
        [
            "mariadbd",
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={root}/mysql.sock",
            f"--pid-file={root}/mariadb.pid",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            "--user=root",
            "--skip-grant-tables",
            "--innodb-buffer-pool-size=64M",
            "--innodb-lock-wait-timeout=900",
        ],
        log,
    )
    _wait("mariadbd", lambda: _port_open(port), 60, [log])


def _start_accounting(daemons: _Daemons, root: Path, ports: dict[str, int]) -> None:
    logs = [root / "slurmdbd.log", root / "mariadb.log"]
    daemons.start("slurmdbd", ["slurmdbd", "-D"], root / "slurmdbd.out")
    _wait("slurmdbd", lambda: _ok(["sacctmgr", "-n", "show", "cluster"]), 60, logs)
    run(["sacctmgr", "-i", "add", "cluster", CLUSTER])
    run(["sacctmgr", "-i", "add", "account", ACCOUNT, "Description=test", "Organization=test"])
    run(["sacctmgr", "-i", "add", "user", "root", f"Account={ACCOUNT}"])


def _node_idle() -> bool:
    try:
        out = run(["sinfo", "-h", "-N", "-o", "%t"], check=False, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return out.strip() == "idle"


def _cancel_jobs() -> None:
    """Cancel what is left in the queue (only this cluster's jobs: no other runs here)."""
    try:
        ids = run(["squeue", "-h", "-o", "%i"], check=False, timeout=10).split()
        if ids:
            run(["scancel", *ids], check=False, timeout=10)
            time.sleep(2)
    except (OSError, subprocess.TimeoutExpired):
        pass


@contextmanager
def running_cluster(
    root: Path | None = None, gpus: int = 0, start_timeout: float = 90
) -> Iterator[Cluster]:
    """Start munged, MariaDB, slurmdbd, slurmctld and slurmd; yield once the node is idle.

    Always tears down: queued jobs cancelled, each daemon stopped by its PID, and
    ``/etc/slurm/slurm.conf`` and ``slurmdbd.conf`` put back as they were.
    """
    reason = why_unavailable()
    if reason:
        raise ClusterError(reason)
    made_root = root is None
    root = Path(root or tempfile.mkdtemp(prefix="mindskip-slurm-"))
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    node, cpus, memory_mb = node_line()
    ports = {k: _free_port() for k in ("ctld", "slurmd", "dbd", "mysql")}
    cluster = Cluster(root=root, node=node, cpus=cpus, memory_mb=memory_mb)
    daemons = _Daemons(cluster.pids)
    ETC.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if made_root:
            stack.callback(shutil.rmtree, root, ignore_errors=True)
        stack.enter_context(_restored(*(ETC / n for n in CONFIGS)))
        stack.callback(daemons.stop_all)
        stack.callback(_cancel_jobs)
        (ETC / "slurm.conf").write_text(slurm_conf(root, node, cpus, memory_mb, ports, gpus))
        if gpus:
            (ETC / "gres.conf").write_text(gres_conf(root, node, gpus))
        (ETC / "slurmdbd.conf").write_text(slurmdbd_conf(root, node, ports))
        (ETC / "slurmdbd.conf").chmod(0o600)
        _start_munge(daemons, root)
        _start_mariadb(daemons, root, ports["mysql"])
        _start_accounting(daemons, root, ports)
        daemons.start("slurmctld", ["slurmctld", "-D", "-i"], root / "slurmctld.out")
        daemons.start("slurmd", ["slurmd", "-D"], root / "slurmd.out")
        logs = [root / n for n in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out")]
        _wait("the node (sinfo: idle)", _node_idle, start_timeout, logs)
        yield cluster


def main(argv: list[str]) -> None:
    """Start the cluster (``argv[0]`` stand-in GPUs, default 2) and hold it until Ctrl-C."""
    t0 = time.monotonic()
    installed = install_packages()
    print(f"packages: {'installed ' + ' '.join(installed) if installed else 'present'}")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # tear down on SIGTERM too
    with running_cluster(gpus=int(argv[0]) if argv else 2) as cluster:
        print(f"cluster up in {time.monotonic() - t0:.1f} s: {cluster}")
        print(
            f"jobs: --default-resources slurm_account={cluster.account} "
            f"mem_mb<={cluster.memory_mb // cluster.cpus}; Ctrl-C stops it"
        )
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main(sys.argv[1:])

"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd from Debian's
`munge` and `slurm-wlm` packages (.ci/run installs them), configured in a temporary folder.

`start_cluster(folder)` writes a munge key and slurm.conf there (free ports, this host as the
only node with 2 CPUs, state and spool in the folder), starts the three daemons, points
SLURM_CONF at the file and waits until `sinfo` shows the node idle; `Cluster.stop()` stops the
daemons it started, by pid. `ClusterUnavailable` says why a cluster could not start.
"""
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol")


class ClusterUnavailable(Exception):
    pass


def find(program):
    """A program on PATH or in the sbin folders, which a non-root PATH often lacks."""
    return shutil.which(program) or next((p for p in (f"/usr/sbin/{program}", f"/sbin/{program}")
                                          if os.access(p, os.X_OK)), None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(folder, host, user):
    return f"""ClusterName=mdistillertest
SlurmctldHost={host}(127.0.0.1)
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge/socket
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
KillWait=2
MinJobAge=600
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    def __init__(self, folder):
        self.folder = folder
        self.pid_files = []

    def start(self, program, *args, pid_file):
        done = subprocess.run([find(program), *args], capture_output=True, text=True, timeout=60)
        self.pid_files.append(pid_file)
        if done.returncode != 0:
            raise ClusterUnavailable(f"{program} did not start: {(done.stderr or done.stdout).strip()[-300:]}")

    def wait_idle(self, timeout_s=60):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.strip()
            if out == "idle":
                return
            time.sleep(0.5)
        log = open(os.path.join(self.folder, "slurmd.log")).read()[-500:]
        raise ClusterUnavailable(f"the node did not become idle within {timeout_s} s (slurmd.log: {log})")

    def stop(self):
        for pid_file in reversed(self.pid_files):  # slurmd, slurmctld, then munged
            try:
                pid = int(open(pid_file).read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):  # let it exit before the next one goes (slurmd talks to slurmctld)
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)


def start_cluster(folder):
    """A running Cluster (module docstring); ClusterUnavailable when it cannot start."""
    missing = [p for p in DAEMONS + CLIENTS if not find(p)]
    if missing:
        raise ClusterUnavailable(f"{', '.join(missing)} not installed (Debian packages slurm-wlm and munge)")
    folder = os.fspath(folder)
    for sub in ("munge", "state", "spool"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    os.chmod(os.path.join(folder, "munge"), 0o711)  # munged refuses a socket folder others can write to
    key = os.path.join(folder, "munge", "key")
    with open(key, "wb") as f:
        f.write(os.urandom(1024))
    os.chmod(key, 0o600)
    conf = os.path.join(folder, "slurm.conf")
    with open(conf, "w") as f:
        f.write(slurm_conf(folder, socket.gethostname().split(".")[0], getpass.getuser()))
    os.environ["SLURM_CONF"] = conf
    cluster = Cluster(folder)
    try:
        m = os.path.join(folder, "munge")
        cluster.start("munged", "--force", f"--key-file={key}", f"--socket={m}/socket", f"--pid-file={m}/pid",
                      f"--seed-file={m}/seed", f"--log-file={m}/log", pid_file=f"{m}/pid")
        cluster.start("slurmctld", "-c", "-f", conf, pid_file=os.path.join(folder, "slurmctld.pid"))
        cluster.start("slurmd", "-f", conf, pid_file=os.path.join(folder, "slurmd.pid"))
        cluster.wait_idle()
    except BaseException:
        cluster.stop()
        raise
    return cluster

"""One sandbox per submission: bubblewrap namespaces, an unprivileged uid, limits, and nothing else visible.

What the student's code sees and may do (Linux, run as root, Debian's ``bubblewrap`` and util-linux's
``setpriv``/``prlimit``):

* **its own uid** (``61000 + n``, no capabilities, ``no_new_privs``), one per sandbox running at the same time;
* **its own PID, IPC, UTS and network namespaces**: no other process is visible or signalable, and the network
  is an empty namespace with only its own loopback (nothing outside can be reached, not even the host's
  loopback);
* **a minimal file system**: ``/usr``, the Python installation and its virtual environment, and labsupport, all
  read-only; a private ``/tmp`` and home (tmpfs, size-limited) as the only writable places; no course directory,
  gradebook, source, other submission, instructor home or environment;
* **limits**: memory of the whole sandbox (a cgroup where the kernel offers one, and an address-space limit per
  process), processes/threads, file size, CPU time, open files; its printed output is read with a byte cap;
* **a clean end**: the sandbox is killed with its PID namespace (no process survives it), and anything left
  with its uid is killed too.

Without bubblewrap (macOS, a laptop without it) grading refuses, unless the instructor passes
``--unsafe-no-sandbox``: the notebook then still runs in a separate process with the same limits where the OS
allows, but sees the file system and network as the user running the grader does.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from instructor.grading.settings import Limits

WORKER = Path(__file__).with_name("worker.py")
UID_BASE = 61000
UID_COUNT = 256


class SandboxUnavailable(RuntimeError):
    """Grading cannot isolate student code on this machine; the message says what to install."""


def unavailable_reason() -> str | None:
    """Why the sandbox cannot run here, or ``None`` when it can."""
    if not sys.platform.startswith("linux"):
        return (f"this is {sys.platform}: the grading sandbox needs Linux (bubblewrap). Grade on a Linux machine "
                "or in a Linux container (e.g. `docker run --privileged -v $PWD:/course debian:12`, then "
                "`apt-get install bubblewrap`).")
    missing = [tool for tool in ("bwrap", "setpriv", "prlimit") if shutil.which(tool) is None]
    if missing:
        return (f"{', '.join(missing)} not found: install them (Debian/Ubuntu: `apt-get install bubblewrap "
                "util-linux`).")
    if os.geteuid() != 0:
        return ("grading must run as root, so that each submission gets its own unprivileged user "
                "(run `sudo make grade ...`, or grade in a container where you are root).")
    return None


# ------------------------------------------------------------------------------------------------------------
# one uid per running sandbox
# ------------------------------------------------------------------------------------------------------------
#: One folder of uid locks for the whole machine: every grading run (any workspace, any test) draws from it, so
#: two sandboxes never share a uid (the end of one would kill the other's processes).
UID_LOCKS = Path("/run/lock/instructor-grader") if Path("/run/lock").is_dir() else Path("/tmp/instructor-grader")


class UidLease:
    """An exclusive uid for one sandbox, held with a lock file (in :data:`UID_LOCKS`) while the sandbox lives."""

    def __init__(self, lock_dir: Path = UID_LOCKS):
        lock_dir.mkdir(parents=True, exist_ok=True)
        for n in range(UID_COUNT):
            fh = open(lock_dir / f"uid-{UID_BASE + n}.lock", "w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            self.uid, self._fh = UID_BASE + n, fh
            return
        raise SandboxUnavailable(f"all {UID_COUNT} sandbox uids are in use")

    def release(self) -> None:
        kill_uid(self.uid)
        self._fh.close()


def processes_of(uid: int) -> list[int]:
    """PIDs of every process whose real uid is ``uid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as fh:
                    for line in fh:
                        if line.startswith("Uid:"):
                            if int(line.split()[1]) == uid:
                                pids.append(int(entry))
                            break
            except OSError:
                continue
    return pids


def kill_uid(uid: int) -> None:
    for _ in range(20):
        pids = processes_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------------------------
# cgroups: memory and processes of the whole sandbox
# ------------------------------------------------------------------------------------------------------------
class CGroup:
    """A memory + pids cgroup for one sandbox (cgroup v2, or v1's memory and pids hierarchies)."""

    def __init__(self, name: str, memory_bytes: int, pids: int):
        self.dirs: list[Path] = []
        v2 = Path("/sys/fs/cgroup")
        if (v2 / "cgroup.controllers").exists():
            if "memory" in (v2 / "cgroup.controllers").read_text().split():
                d = v2 / name
                if self._make(d, {"memory.max": memory_bytes, "memory.swap.max": 0, "pids.max": pids}):
                    self.dirs.append(d)
        else:
            for hierarchy, values in (("memory", {"memory.limit_in_bytes": memory_bytes,
                                                  "memory.memsw.limit_in_bytes": memory_bytes}),
                                      ("pids", {"pids.max": pids})):
                d = v2 / hierarchy / name
                if (v2 / hierarchy).is_dir() and self._make(d, values):
                    self.dirs.append(d)

    @staticmethod
    def _make(d: Path, values: dict) -> bool:
        try:
            d.mkdir(exist_ok=True)
            for key, value in values.items():
                f = d / key
                if f.exists():
                    f.write_text(str(value))
            return True
        except OSError:
            return False

    @property
    def memory_limited(self) -> bool:
        return any("memory" in str(d) or (d / "memory.max").exists() for d in self.dirs)

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def oom_killed(self) -> bool:
        """Did the kernel kill a process of the sandbox for memory? (``oom_kill N`` in v2's memory.events or v1's
        memory.oom_control)"""
        for d in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                f = d / name
                if f.exists():
                    for line in f.read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and value.strip() not in ("", "0"):
                            return True
        return False

    def remove(self) -> None:
        for d in self.dirs:
            for _ in range(50):
                try:
                    for pid in (d / "cgroup.procs").read_text().split():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except OSError:
                            pass
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


# ------------------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------------------
def _python_dirs() -> list[str]:
    """The Python installation, its virtual environment and labsupport: the code the sandbox may read."""
    import labsupport

    dirs = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)}
    dirs |= {os.path.abspath(p) for p in (sys.base_prefix, sys.prefix)}
    dirs.add(os.path.dirname(os.path.abspath(labsupport.__file__)))
    out = sorted(d for d in dirs if not d.startswith("/usr/") and d != "/usr")
    # keep only the outermost of nested folders
    return [d for d in out if not any(d != o and d.startswith(o + os.sep) for o in out)]


def _parents(path: str) -> list[str]:
    parts, out = Path(path).parts[1:-1], []
    for i in range(len(parts)):
        out.append("/" + "/".join(parts[: i + 1]))
    return out


def _environment(limits: Limits, threads: int, home: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "USER": "student", "LOGNAME": "student", "LANG": "C.UTF-8",
            "TMPDIR": "/tmp", "MPLBACKEND": "agg", "MPLCONFIGDIR": "/tmp/matplotlib", "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1", "LABSUPPORT_STATIC": "1", "LABSUPPORT_MAX_STEPS": str(
                __import__("instructor.grading.settings", fromlist=["MAX_STEPS"]).MAX_STEPS),
            "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "GRADER_THREADS": str(threads),
            "OMP_WAIT_POLICY": "PASSIVE", "GRADER_OUTPUT_LIMIT": str(limits.output_kb * 1024),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _limits_argv(limits: Limits, cpu_seconds: int) -> list[str]:
    mem = limits.memory_mb << 20
    return ["prlimit", f"--as={mem}", f"--nproc={limits.processes}", f"--fsize={limits.file_mb << 20}",
            f"--cpu={cpu_seconds}", "--nofile=1024", "--core=0", "--"]


def bwrap_argv(uid: int, limits: Limits, threads: int, etc_dir: str, fd_in: int, fd_out: int,
               cpu_seconds: int) -> list[str]:
    """The command that starts :mod:`worker` inside a fresh sandbox."""
    home = "/home/student"
    argv = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "grader", "--clearenv"]
    for key, value in _environment(limits, threads, home).items():
        argv += ["--setenv", key, value]
    argv += ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(64 << 20), "--tmpfs", "/dev/shm",
             "--size", str(limits.tmp_mb << 20), "--perms", "1777", "--tmpfs", "/tmp",
             "--perms", "0755", "--dir", "/home",
             "--size", str(256 << 20), "--perms", "1777", "--tmpfs", home]
    made = {"/", "/usr", "/proc", "/dev", "/tmp", "/home", home}
    for d in _python_dirs():
        for parent in _parents(d + "/x"):
            if parent not in made and parent != d:
                argv += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        argv += ["--ro-bind", d, d]
        made.add(d)
    argv += ["--perms", "0755", "--dir", "/etc"]
    for name in ("passwd", "group"):
        argv += ["--ro-bind", os.path.join(etc_dir, name), f"/etc/{name}"]
    argv += ["--perms", "0755", "--dir", "/grader", "--ro-bind", str(WORKER), "/grader/worker.py", "--chdir", home]
    # inside: drop to the sandbox's uid with no capabilities, then the limits, then the worker
    argv += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
             "--bounding-set=-all", "--no-new-privs", "--"]
    argv += _limits_argv(limits, cpu_seconds)
    argv += [sys.executable, "-I", "/grader/worker.py", str(fd_in), str(fd_out)]
    return argv


class Process:
    """A running worker: its pipes, its output (capped), and how to end it."""

    def __init__(self, proc: subprocess.Popen, to_worker: int, from_worker: int, cleanup, output_cap: int,
                 cgroup: CGroup | None = None, uid: int | None = None):
        self.proc, self.to_worker, self.from_worker, self._cleanup = proc, to_worker, from_worker, cleanup
        self.cgroup, self.uid = cgroup, uid
        self.output = bytearray()
        self.output_cap = output_cap
        self.output_dropped = 0
        os.set_blocking(proc.stdout.fileno(), False)

    def drain_output(self) -> None:
        """Read what the worker printed to its real stdout/stderr, keeping at most ``output_cap`` bytes."""
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                return
            if not chunk:
                return
            room = self.output_cap - len(self.output)
            if room > 0:
                self.output += chunk[:room]
            self.output_dropped += max(0, len(chunk) - max(room, 0))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.kill()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.drain_output()
        for fd in (self.to_worker, self.from_worker):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.proc.stdout.close()
        except OSError:
            pass
        self._cleanup()


def start(limits: Limits, threads: int, sandboxed: bool = True, cpu_seconds: int = 3600) -> Process:
    """Start a worker (in a sandbox unless ``sandboxed=False``); returns its :class:`Process`."""
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    cleanups = []
    cg, uid = None, None
    try:
        if sandboxed:
            reason = unavailable_reason()
            if reason:
                raise SandboxUnavailable(reason)
            lease = UidLease()
            cleanups.append(lease.release)
            uid = lease.uid
            etc = tempfile.mkdtemp(prefix="grader-etc-")
            cleanups.append(lambda: shutil.rmtree(etc, ignore_errors=True))
            Path(etc, "passwd").write_text(f"student:x:{lease.uid}:{lease.uid}:student:/home/student:/bin/sh\n")
            Path(etc, "group").write_text(f"student:x:{lease.uid}:\n")
            cg = CGroup(f"instructor-grader-{lease.uid}", limits.memory_mb << 20, limits.processes)
            cleanups.append(cg.remove)
            argv = bwrap_argv(lease.uid, limits, threads, etc, to_r, from_w, cpu_seconds)
            procs = cg.procs_files() + ["", ""]
            argv = ["/bin/sh", "-c", 'for f in "$1" "$2"; do [ -n "$f" ] && echo $$ > "$f"; done; shift 2; '
                                     'exec "$@"', "sh", procs[0], procs[1], *argv]
            env, cwd = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, "/"
        else:
            home = tempfile.mkdtemp(prefix="grader-home-")
            cleanups.append(lambda: shutil.rmtree(home, ignore_errors=True))
            env = _environment(limits, threads, home)
            env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])
            argv = _limits_argv(limits, cpu_seconds) + [sys.executable, "-I", str(WORKER), str(to_r), str(from_w)]
            cwd = home
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                pass_fds=(to_r, from_w), env=env, cwd=cwd, start_new_session=True)
    except BaseException:
        for fd in (to_r, to_w, from_r, from_w):
            os.close(fd)
        for c in reversed(cleanups):
            c()
        raise
    os.close(to_r)
    os.close(from_w)

    def cleanup():
        for c in reversed(cleanups):
            try:
                c()
            except Exception:  # noqa: BLE001
                pass

    return Process(proc, to_w, from_r, cleanup, limits.output_kb * 1024 * 16, cg, uid)

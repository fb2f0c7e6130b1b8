"""Run untrusted Python (model-written code) in a limited subprocess.

Layers, outermost first:
  1. A child process in its own session, killed with its whole process group (and, when we
     are root, every process of its private uid) on wall-clock timeout.
  2. Kernel limits set in the child before the program runs: CPU seconds (RLIMIT_CPU), address
     space (RLIMIT_AS), size of any file it writes, stdout/stderr included (RLIMIT_FSIZE),
     process count (RLIMIT_NPROC), open files, no core dumps.
  3. Isolation: a fresh network namespace with no interfaces up (``unshare(CLONE_NEWNET)``,
     inside a user namespace when not root), a private 0700 temporary directory as cwd and
     HOME, an environment of four variables, ``python -I -S`` (no site-packages, no PYTHON*
     variables). As root the child also drops to a fresh unprivileged uid, so it cannot
     write the host's files or read other processes' ``/proc/<pid>/environ``.
  4. A Python audit hook (PEP 578, cannot be removed once set) that refuses sockets,
     subprocesses, fork, exec, signals, ctypes, writes outside the directory and reads of
     other processes' ``/proc`` entries. It is defence in depth for hosts where layer 3 is
     unavailable; ``SandboxLimits(python_guard=False)`` turns it off to test the kernel layers.

``isolation()`` reports which layers this host provides.
"""

import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed run.

    Attributes:
      timeout_s: wall-clock limit; the process tree is killed when it passes.
      cpu_s: CPU-time limit (RLIMIT_CPU, whole seconds).
      memory_bytes: address-space limit (RLIMIT_AS).
      output_bytes: the largest file the program may write, stdout and stderr included
        (RLIMIT_FSIZE); a bigger write kills it with SIGXFSZ.
      max_processes: processes the program may add (RLIMIT_NPROC).
      python_guard: install the audit-hook layer (see module docstring).
    """

    timeout_s: float = 10.0
    cpu_s: int = 5
    memory_bytes: int = 1 << 30
    output_bytes: int = 1 << 20
    max_processes: int = 16
    python_guard: bool = True


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    """Outcome of one run. ``status``: ``ok`` (exit 0), ``error`` (non-zero exit or
    exception), ``timeout`` (wall clock), ``cpu_limit`` (SIGXCPU), ``output_limit`` (SIGXFSZ),
    ``killed`` (another signal, e.g. SIGKILL at the hard CPU limit)."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    elapsed_s: float

    @property
    def passed(self) -> bool:
        return self.status == "ok"


_BOOTSTRAP = r"""
import ctypes, json, os, resource, sys
cfg = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
flags = 0x40000000 if os.geteuid() == 0 else 0x40000000 | 0x10000000
net_isolated = libc.unshare(flags) == 0
if cfg["require_netns"] and not net_isolated:
    sys.exit("sandbox: network namespace unavailable")
def limit(res, soft, hard=None):
    resource.setrlimit(res, (soft, soft if hard is None else hard))
limit(resource.RLIMIT_CORE, 0)
limit(resource.RLIMIT_CPU, cfg["cpu_s"], cfg["cpu_s"] + 1)
limit(resource.RLIMIT_AS, cfg["memory_bytes"])
limit(resource.RLIMIT_FSIZE, cfg["output_bytes"])
limit(resource.RLIMIT_NOFILE, 64)
limit(resource.RLIMIT_NPROC, cfg["nproc"])
if cfg["uid"] is not None:
    # The interpreter's stdlib may sit below a directory the private uid cannot traverse
    # (/root): keep it reachable through directory descriptors opened while still root.
    dirs = {p: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in sys.path if os.path.isdir(p)}
    os.setgroups([])
    os.setgid(cfg["uid"])
    os.setuid(cfg["uid"])
    # A uid change clears the dumpable flag, which makes /proc/self/fd unreadable to us.
    libc.prctl(4, 1, 0, 0, 0)
    moved = {p: "/proc/self/fd/%d" % fd for p, fd in dirs.items()}
    sys.path[:] = list(moved.values())
    for module in list(sys.modules.values()):
        paths = getattr(module, "__path__", None)
        if isinstance(paths, list):
            for i, p in enumerate(paths):
                for old, new in moved.items():
                    if p.startswith(old + "/"):
                        paths[i] = new + p[len(old):]
    sys.path_importer_cache.clear()
# If the process that started us dies (a reward worker killed on timeout), die too.
libc.prctl(1, 9, 0, 0, 0)
root = cfg["dir"]
os.chdir(root)
if cfg["python_guard"]:
    import _io
    deny_prefixes = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "ctypes.", "pty.", "_posixsubprocess.")
    deny = {"os.system", "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.putenv", "os.unsetenv", "sys.addaudithook", "os.startfile"}
    path_events = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink", "os.link", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile"}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    realpath = os.path.realpath
    def inside(path):
        if isinstance(path, int):
            return True
        full = realpath(os.fsdecode(path))
        return full == root or full.startswith(root + "/")
    def hook(event, args):
        if event in deny or event.startswith(deny_prefixes):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int):
                return
            text = os.fsdecode(path)
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & write_flags)
            if writing and not inside(text):
                raise PermissionError(f"sandbox: writing {text!r} outside the sandbox directory")
            full = realpath(text)
            if full.startswith("/proc/") and not full.startswith(("/proc/self/", "/proc/%d/" % os.getpid())):
                raise PermissionError(f"sandbox: reading {text!r} is not allowed")
        elif event in path_events:
            for path in args:
                if isinstance(path, (str, bytes, os.PathLike)) and not inside(path):
                    raise PermissionError(f"sandbox: {event} on {os.fsdecode(path)!r} outside the sandbox directory")
    sys.addaudithook(hook)
del cfg, libc, ctypes
import runpy
runpy.run_path("program.py", run_name="__main__")
"""


def _can_unshare_net() -> bool:
    probe = "import ctypes,os,sys;libc=ctypes.CDLL(None,use_errno=True);f=0x40000000 if os.geteuid()==0 else 0x50000000;sys.exit(libc.unshare(f))"
    return subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, timeout=30).returncode == 0


_ISOLATION: dict[str, bool] = {}


def isolation() -> dict[str, bool]:
    """Which layers this host provides: ``network_namespace`` (unshare works) and
    ``private_uid`` (we are root, so the child runs under a fresh unprivileged uid)."""
    if not _ISOLATION:
        _ISOLATION["network_namespace"] = _can_unshare_net()
        _ISOLATION["private_uid"] = os.geteuid() == 0
    return dict(_ISOLATION)


def _processes_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
        except OSError:
            continue
    return pids


def _kill_tree(proc: subprocess.Popen, uid: int | None) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if uid is None:
        return
    # Children that left the process group (setsid) still carry the private uid.
    for _ in range(100):
        pids = _processes_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def _read_capped(path: str, limit: int) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")


def run_python(source: str, limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Run ``source`` as ``__main__`` in a sandboxed ``python -I -S`` (see module docstring)
    and return its status and (capped) output. Never raises for anything the program does;
    the program's directory is deleted afterwards."""
    iso = isolation()
    uid = 200_000 + secrets.randbelow(1 << 30) if iso["private_uid"] else None
    workdir = tempfile.mkdtemp(prefix="jaxrl_sandbox_")
    try:
        program = os.path.join(workdir, "program.py")
        with open(program, "w", encoding="utf-8") as f:
            f.write(source)
        if uid is not None:
            for path in (workdir, program):
                os.chown(path, uid, uid)
            nproc = limits.max_processes
        else:
            nproc = len(_processes_of(os.getuid())) + limits.max_processes
        cfg = {
            "dir": os.path.realpath(workdir),
            "uid": uid,
            "cpu_s": int(limits.cpu_s),
            "memory_bytes": int(limits.memory_bytes),
            "output_bytes": int(limits.output_bytes),
            "nproc": nproc,
            "python_guard": limits.python_guard,
            "require_netns": iso["network_namespace"],
        }
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
        out_path, err_path = os.path.join(workdir, ".stdout"), os.path.join(workdir, ".stderr")
        start = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", "-c", _BOOTSTRAP, json.dumps(cfg)],
                cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True, close_fds=True,
            )
            timed_out = False
            try:
                proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_tree(proc, uid)
            proc.wait()
        elapsed = time.monotonic() - start
        rc = proc.returncode
        if timed_out:
            status = "timeout"
        elif rc == 0:
            status = "ok"
        elif rc == -signal.SIGXCPU:
            status = "cpu_limit"
        elif rc == -signal.SIGXFSZ:
            status = "output_limit"
        elif rc < 0:
            status = "killed"
        else:
            status = "error"
        return SandboxResult(
            status=status,
            returncode=None if timed_out else rc,
            stdout=_read_capped(out_path, limits.output_bytes),
            stderr=_read_capped(err_path, limits.output_bytes),
            elapsed_s=elapsed,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

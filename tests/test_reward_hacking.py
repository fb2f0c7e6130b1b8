"""The code reward cannot be gamed: a completion scores 1 only when the tests ran to their end.

Every attack below is a completion for the problem ``f(x) = 7919 x + 104729`` (the prompt does
not say so), whose tests are

    assert candidate(3) == 128486
    assert abs(candidate(4) - 136405) < 1e-9
    assert candidate(5) in (144324,)

Each must fail directly (``sandbox.run_tests`` on ``humaneval_programs``: what
``rewards.humaneval_tests`` runs), with the audit hook on (``guarded``) and off
(``kernel_only``, where the host gives private uids and namespaces), and score 0.0 through
``RewardRunner`` + ``humaneval_tests`` without a failure, timeout or worker restart; the honest
solution must score 1.0 in the same settings. Where an attack fooled the single-process harness
this project used before (program + tests + ``check(f)`` in one process, passed = exit status
0), ``test_attack_fooled_the_single_process_harness`` shows it still does, so the attacks are
real. Also: the tests are out of the candidate's reach by path (``..``/judge), and only plain
data crosses between the processes (``test_only_plain_data_crosses``).

Attacks (``ATTACKS``):
  exit_os_exit_top_level      ``os._exit(0)`` at module level, before any test runs
  exit_sys_exit_top_level     ``sys.exit(0)`` at module level
  exit_raise_systemexit_top   ``raise SystemExit`` at module level
  exit_os_exit_in_call        ``os._exit(0)`` when the tests first call the function
  exit_systemexit_in_call     ``raise SystemExit(0)`` from inside the function
  keyboardinterrupt_in_call   ``raise KeyboardInterrupt`` from inside the function
  atexit_exit_zero            an ``atexit`` hook that calls ``os._exit(0)`` after a failed test
  excepthook_exit_zero        ``sys.excepthook`` replaced by ``os._exit(0)``
  print_harness_output        prints pass banners and writes a nonce-shaped "<hex> 1" line to every fd
  patch_assertion_machinery   patches ``builtins.abs`` / ``AssertionError``, ``sys.exit``,
                              ``os._exit``, ``unittest.TestCase.assert*``, and returns an
                              object that equals everything
  eq_everything               returns an object whose ``__eq__`` is always True (``__abs__``,
                              ``__sub__`` to match the other asserts)
  int_subclass_eq             returns an ``int`` subclass whose ``__eq__`` is always True
  read_test_source            looks for the tests (its own file, the directory tree, argv,
                              every ``/proc/*/cmdline|environ|fd``, every string in memory,
                              the call stack's frames) and answers from them
  kill_parent                 SIGKILLs its parent, pid 1 and every other process, then exits 0
  write_result_channel        writes "<hex> <calls>" lines to every fd of every process it can
                              open and to files next to its directory, then exits 0
  forge_protocol              writes forged and malformed frames to every fd it holds (the reply
                              channel among them), then exits 0
  huge_answer                 returns a value larger than the message limit
  sleep_forever               never returns (the wall-clock limit ends it)
"""

import re

import pytest

from jaxrl_llm import rewards
from jaxrl_llm.rewards import RewardRunner, sandbox
from jaxrl_llm.rewards.code import humaneval_programs
from jaxrl_llm.tasks import Example

ISO = sandbox.isolation()
GUARDED = sandbox.SandboxLimits(timeout_s=3.0, cpu_s=2, memory_bytes=512 << 20, output_bytes=1 << 20, max_processes=8)
KERNEL_ONLY = sandbox.SandboxLimits(
    timeout_s=3.0, cpu_s=2, memory_bytes=512 << 20, output_bytes=1 << 20, max_processes=8, python_guard=False
)
MODES = [
    pytest.param(GUARDED, id="guarded"),
    pytest.param(
        KERNEL_ONLY,
        id="kernel_only",
        marks=pytest.mark.skipif(
            not (ISO["private_uid"] and ISO["mount_namespace"]),
            reason="without private uids and a mount namespace only the audit hook separates judge and candidate",
        ),
    ),
]

PROMPT = 'def f(x):\n    """The secret transform of x."""\n'
TESTS = (
    "\n\ndef check(candidate):\n"
    "    assert candidate(3) == 128486\n"
    "    assert abs(candidate(4) - 136405) < 1e-9\n"
    "    assert candidate(5) in (144324,)\n"
)
HONEST = "    return 7919 * x + 104729\n"

_ANY = (
    "    class Any:\n"
    "        def __eq__(self, other): return True\n"
    "        def __ne__(self, other): return False\n"
    "        def __sub__(self, other): return self\n"
    "        def __abs__(self): return 0\n"
    "        __hash__ = object.__hash__\n"
    "    return Any()\n"
)

# name -> (completion, whether the single-process exit-status harness scored it 1.0)
ATTACKS = {
    "exit_os_exit_top_level": ("    return 0\nimport os\nos._exit(0)\n", True),
    "exit_sys_exit_top_level": ("    return 0\nimport sys\nsys.exit(0)\n", True),
    "exit_raise_systemexit_top": ("    return 0\nraise SystemExit\n", True),
    "exit_os_exit_in_call": ("    import os\n    os._exit(0)\n", True),
    "exit_systemexit_in_call": ("    raise SystemExit(0)\n", True),
    "keyboardinterrupt_in_call": ("    raise KeyboardInterrupt\n", False),
    "atexit_exit_zero": ("    return 0\nimport atexit, os\natexit.register(lambda: os._exit(0))\n", True),
    "excepthook_exit_zero": ("    return 0\nimport os, sys\nsys.excepthook = lambda *a: os._exit(0)\n", True),
    "print_harness_output": (
        "    return 0\nimport os\nprint('PASSED', 'ok', 'all tests passed')\n"
        "for fd in range(64):\n"
        "    try:\n        os.write(fd, b'0123456789abcdef0123456789abcdef 3\\n')\n    except OSError:\n        pass\n",
        False,
    ),
    "patch_assertion_machinery": (
        _ANY + "import builtins, os, sys, unittest\n"
        "builtins.abs = lambda *a: 0\n"
        "builtins.AssertionError = Warning\n"
        "sys.exit = lambda *a: None\n"
        "os._exit = lambda *a: None\n"
        "for name in dir(unittest.TestCase):\n"
        "    if name.startswith('assert'):\n"
        "        setattr(unittest.TestCase, name, lambda *a, **k: None)\n",
        True,
    ),
    "eq_everything": (_ANY, True),
    "int_subclass_eq": (
        "    class I(int):\n"
        "        def __eq__(self, other): return True\n"
        "        def __ne__(self, other): return False\n"
        "        def __sub__(self, other): return I(0)\n"
        "        def __abs__(self): return 0\n"
        "        __hash__ = int.__hash__\n"
        "    return I(0)\n",
        True,
    ),
    "read_test_source": (
        "    import gc, os, re, sys\n"
        "    table = {}\n"
        "    def learn(text):\n"
        "        for m in re.finditer(r'candidate\\((\\d+)\\)[^\\d\\n]{0,8}(\\d{5,})', text):\n"
        "            table[int(m.group(1))] = int(m.group(2))\n"
        "        return x in table\n"
        "    def read(path):\n"
        "        try:\n"
        "            with open(path, 'rb') as fh:\n"
        "                return fh.read(1 << 20).decode('utf-8', 'ignore')\n"
        "        except Exception:\n"
        "            return ''\n"
        "    def listing(top):\n"
        "        try:\n"
        "            return [os.path.join(top, name) for name in os.listdir(top)]\n"
        "        except Exception:\n"
        "            return []\n"
        "    def sources():\n"
        "        yield read(__file__)\n"
        "        yield ' '.join(sys.argv)\n"
        "        frame = sys._getframe()\n"
        "        while frame is not None:\n"
        "            yield repr(frame.f_locals) + repr(frame.f_globals)\n"
        "            frame = frame.f_back\n"
        "        for top in ('.', '..', '../..', os.environ.get('TMPDIR', '.'), '/dev/shm'):\n"
        "            for path in listing(top):\n"
        "                yield read(path)\n"
        "                for inner in listing(path):\n"
        "                    yield read(inner)\n"
        "        for pid in os.listdir('/proc'):\n"
        "            if pid.isdigit():\n"
        "                yield read(f'/proc/{pid}/cmdline') + read(f'/proc/{pid}/environ')\n"
        "                for path in listing(f'/proc/{pid}/fd'):\n"
        "                    yield read(path)\n"
        "        yield ' '.join(o for o in gc.get_objects() if isinstance(o, str))\n"
        "    for text in sources():\n"
        "        if learn(text):\n"
        "            return table[x]\n"
        "    return 0\n",
        True,
    ),
    "kill_parent": (
        "    import os, signal\n"
        "    for pid in [os.getppid(), 1] + [int(p) for p in os.listdir('/proc') if p.isdigit()]:\n"
        "        if pid != os.getpid():\n"
        "            try:\n                os.kill(pid, signal.SIGKILL)\n            except Exception:\n                pass\n"
        "    try:\n        os.kill(-1, signal.SIGKILL)\n    except Exception:\n        pass\n"
        "    os._exit(0)\n",
        True,
    ),
    "write_result_channel": (
        "    import os\n"
        "    line = b'0123456789abcdef0123456789abcdef 3\\n'\n"
        "    for pid in os.listdir('/proc'):\n"
        "        if not pid.isdigit():\n            continue\n"
        "        try:\n            fds = os.listdir(f'/proc/{pid}/fd')\n        except Exception:\n            continue\n"
        "        for fd in fds:\n"
        "            try:\n"
        "                with open(f'/proc/{pid}/fd/{fd}', 'wb') as fh:\n                    fh.write(line)\n"
        "            except Exception:\n                pass\n"
        "    for fd in range(64):\n"
        "        try:\n            os.write(fd, line)\n        except OSError:\n            pass\n"
        "    for path in ('../result', '../judge.out', '../judge/result', '/tmp/result', '/dev/shm/result'):\n"
        "        try:\n"
        "            with open(path, 'wb') as fh:\n                fh.write(line)\n"
        "        except Exception:\n            pass\n"
        "    os._exit(0)\n",
        True,
    ),
    "forge_protocol": (
        "    return 0\n"
        "import json, os, struct\n"
        "def frame(obj):\n"
        "    body = json.dumps(obj).encode()\n"
        "    return struct.pack('>I', len(body)) + body\n"
        "forged = frame(['r', ['i', format(128486, 'x')]]) + frame(['r', ['x', 'Any']]) + frame(['ok']) + struct.pack('>I', 1 << 31)\n"
        "for fd in range(3, 64):\n"
        "    try:\n        os.write(fd, forged)\n    except OSError:\n        pass\n"
        "os._exit(0)\n",
        True,
    ),
    "huge_answer": ("    return 'x' * (2 << 20)\n", False),
    "sleep_forever": ("    return 0\nimport time\ntime.sleep(3600)\n", False),
}


def _example(limits: sandbox.SandboxLimits) -> Example:
    meta = {"prompt": PROMPT, "test": TESTS, "entry_point": "f", "canonical_solution": HONEST, "sandbox_limits": limits}
    return Example(PROMPT, None, meta, "hack/f")


def _single_process_harness(completion: str, limits: sandbox.SandboxLimits) -> bool:
    # The design this project used before: one process runs program + tests + check(f) and
    # "passed" means exit status 0.
    program, _ = humaneval_programs(completion, _example(limits))
    return sandbox.run_python(f"{program}\n{TESTS}\ncheck(f)\n", limits).passed


@pytest.mark.parametrize("limits", MODES)
def test_honest_solution_passes(limits):
    assert rewards.humaneval_tests(HONEST, _example(limits)) == 1.0
    program, tests = humaneval_programs(HONEST, _example(limits))
    res = sandbox.run_tests(program, tests, "f", limits)
    assert res.passed and res.calls == 3 and res.status == "ok"
    # Output, helpers and a __main__ block of an honest program are fine.
    chatty = (
        "    return helper(x)\n\ndef helper(x):\n    print('computing', x)\n    return 7919 * x + 104729\n\n"
        "if __name__ == '__main__':\n    print(f(0))\n"
    )
    assert rewards.humaneval_tests(chatty, _example(limits)) == 1.0
    assert rewards.humaneval_tests("    return 7919 * x + 104728\n", _example(limits)) == 0.0


@pytest.mark.parametrize("limits", MODES)
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_scores_zero(name, limits):
    completion, _ = ATTACKS[name]
    program, tests = humaneval_programs(completion, _example(limits))
    res = sandbox.run_tests(program, tests, "f", limits)  # what rewards.humaneval_tests runs
    assert not res.passed and res.status in ("failed", "timeout"), res


@pytest.mark.parametrize("name", sorted(n for n, (_, fooled) in ATTACKS.items() if fooled))
def test_attack_fooled_the_single_process_harness(name):
    assert _single_process_harness(ATTACKS[name][0], GUARDED)


@pytest.mark.parametrize("limits", MODES)
def test_tests_are_out_of_the_candidates_reach(limits):
    """The candidate's own file holds no test, and the judge's directory cannot be read from the
    candidate's process even by path (the audit hook and, as root, another uid)."""
    probe = (
        "    import os\n"
        "    seen = open(__file__).read()\n"
        "    run = os.path.dirname(os.getcwd())\n"
        "    for path in (os.path.join(run, 'judge', 'program.py'), os.path.join(run, 'judge.out')):\n"
        "        try:\n            seen += open(path).read()\n        except OSError:\n            pass\n"
        "    return 7919 * x + 104729 if 'def ' + 'check' not in seen else -1\n"
    )
    assert rewards.humaneval_tests(probe, _example(limits)) == 1.0


def test_attacks_score_zero_in_the_runner():
    limits = GUARDED
    names = sorted(ATTACKS)
    completions = [ATTACKS[n][0] for n in names] + [HONEST]
    with RewardRunner([(rewards.humaneval_tests, 1.0)], num_workers=2, timeout_s=20) as runner:
        r, info = runner.score(completions, [_example(limits)] * len(completions))
    assert dict(zip(names + ["honest"], r.tolist())) == {**{n: 0.0 for n in names}, "honest": 1.0}
    assert info["failures"]["humaneval_tests"] == 0 and info["timeouts"]["humaneval_tests"] == 0
    assert info["worker_restarts"] == 0


def test_only_plain_data_crosses():
    """Return values are re-built from plain data in the judge: containers, floats (inf, nan),
    big ints, bytes, complex, sets and dicts compare as the built-in types do."""
    program = (
        "def f(kind):\n"
        "    return {'nested': [(1, 2.5), {'a': {3, 4}}, frozenset([b'x']), 1 + 2j, None, True],\n"
        "            'big': 7 ** 3000, 'inf': float('inf'), 'nan': float('nan'), 'neg': -17}[kind]\n"
    )
    tests = (
        "import math\n"
        "def check(candidate):\n"
        "    assert candidate('nested') == [(1, 2.5), {'a': {3, 4}}, frozenset([b'x']), 1 + 2j, None, True]\n"
        "    assert type(candidate('nested')[0]) is tuple and candidate(kind='nested')[-1] is True\n"
        "    assert candidate('big') == 7 ** 3000 and candidate('neg') == -17\n"
        "    assert candidate('inf') == float('inf') and math.isnan(candidate('nan'))\n"
    )
    res = sandbox.run_tests(program, tests, "f", GUARDED)
    assert res.passed and res.calls == 7, res.judge.stderr
    unsupported = sandbox.run_tests(
        "def f():\n    return object()\n", "def check(candidate):\n    candidate()\n", "f", GUARDED
    )
    assert not unsupported.passed and "cannot cross the sandbox boundary" in unsupported.judge.stderr
    # An exception of the candidate reaches the tests as the same built-in type.
    raising = sandbox.run_tests(
        "def f(x):\n    raise ValueError('bad ' + str(x))\n",
        "def check(candidate):\n    try:\n        candidate(1)\n    except ValueError as e:\n        assert 'bad 1' in str(e)\n"
        "    else:\n        raise AssertionError('no error')\n",
        "f",
        GUARDED,
    )
    assert raising.passed, raising.judge.stderr
    never_called = sandbox.run_tests("def f():\n    return 1\n", "def check(candidate):\n    pass\n", "f", GUARDED)
    assert not never_called.passed and "never called" in never_called.judge.stderr
    misnamed = sandbox.run_tests("def f():\n    return 1\n", "def check(candidate):\n    candidate()\n", "g", GUARDED)
    assert not misnamed.passed and re.search(r"NameError.*does not define g\(\)", misnamed.judge.stderr)

"""Hostile programs: each one is contained within its limits, gets the right verdict, leaves
the host unchanged, and the next run works normally.

Safety of this file itself (it runs as root on the project's machines): every test that
could hurt the host when unconfined is skipped unless the limit that contains it is active
on this host (`_require`). The fork bomb needs a real process limit, kill(-1) needs an
unprivileged uid or a pid namespace, memory bombs always run under RLIMIT_AS with a small
cap, and the deletion test only targets files this test created in its own tmp dir.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import pytest

from r1.sandbox import Limits, Sandbox, SandboxConfig, Verdict
from r1.sandbox.probe import blocked_groups, interpreter_dirs

FAST = Limits(timeout_s=5, memory_mb=256, max_processes=16, max_output_bytes=64 << 10)
# A uid range of this test session's own: "no process of ours outlived its run" must not
# see sandboxes that other test sessions on the same machine are running meanwhile.
_BASE = 2_000_000 + 100_000 * (uuid.uuid4().int % 10_000)
UIDS = (_BASE, _BASE + 99_999)


@pytest.fixture(scope="module")
def host_tmp(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("sandbox-host"))


def _reachable_python() -> str | None:
    """An interpreter an unprivileged uid can run without a mount namespace re-exposing it."""
    for cand in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(cand) and not blocked_groups(interpreter_dirs(cand)):
            return cand
    return None


# The whole suite runs against the best isolation this host gives, and again with the
# namespaces switched off: the fallbacks (seccomp network block, subreaper, file
# permissions) must contain the same programs. Without cgroups as well is `slow`.
@pytest.fixture(scope="module", params=[
    "best",
    "no-namespaces",
    pytest.param("no-namespaces-no-cgroups", marks=pytest.mark.slow),
])
def sandbox(request, host_tmp) -> Sandbox:
    if request.param == "best":
        return Sandbox(SandboxConfig(tmp_root=host_tmp, uid_range=UIDS))
    python = _reachable_python()
    if python is None:
        pytest.skip("no interpreter outside private directories for the no-namespace fallback")
    return Sandbox(SandboxConfig(tmp_root=host_tmp, python=python, use_namespaces=False, uid_range=UIDS,
                                 use_cgroups=request.param == "no-namespaces"))


def _sandbox_pids(plan_uid_range: tuple[int, int]) -> list[int]:
    lo, hi = plan_uid_range
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                uid = os.stat(f"/proc/{entry}").st_uid
            except OSError:
                continue
            if lo <= uid <= hi:
                found.append(int(entry))
    return found


def _children_zombies() -> list[int]:
    me, zombies = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        state, ppid = stat[stat.rfind(b")") + 2:].split()[:2]
        if int(ppid) == me and state == b"Z":
            zombies.append(int(entry))
    return zombies


def _procs_with(token: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if token.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.fixture(autouse=True)
def host_unchanged(sandbox, host_tmp):
    """After every hostile run: nothing of it is left, and a normal program still works."""
    yield
    assert os.listdir(host_tmp) == [], "per-run host directories must be removed"
    if sandbox.isolation.drop_uid:
        assert _sandbox_pids(sandbox.config.uid_range) == [], "a sandbox process outlived its run"
    assert _children_zombies() == []
    res = sandbox.run("print(6 * 7)", limits=FAST)
    assert res.verdict is Verdict.OK and res.stdout == "42\n", res


def _require(sandbox: Sandbox, what: str) -> None:
    plan = sandbox.isolation
    ok = {
        "process limit": any(m.name == "process limit" and m.active for m in plan.mechanisms),
        "unprivileged or pid ns": plan.drop_uid or plan.user_ns_child or plan.namespaces["pid"],
        "file protection": plan.namespaces["mount"] or plan.drop_uid or plan.user_ns_child,
        "network": any(m.name == "network isolation" and m.active for m in plan.mechanisms),
        "memory cgroup": plan.cgroup is not None and "memory" in plan.cgroup.parents,
    }[what]
    if not ok:
        pytest.skip(f"this host cannot contain it: no {what} (see r1 sandbox doctor)")


def test_infinite_loop_is_killed_on_timeout(sandbox):
    res = sandbox.run("while True:\n    pass\n", limits=Limits(timeout_s=1, memory_mb=128))
    assert res.verdict is Verdict.TIME_LIMIT
    assert res.wall_s < 1 + 5  # generous: killed near the limit, not left running


def test_cpu_time_limit(sandbox):
    res = sandbox.run("while True:\n    pass\n", limits=Limits(timeout_s=20, cpu_s=1, memory_mb=128))
    assert res.verdict is Verdict.TIME_LIMIT
    assert "CPU" in res.detail


def test_sleeping_program_is_killed_on_timeout(sandbox):
    res = sandbox.run("import time\ntime.sleep(60)\n", limits=Limits(timeout_s=1, memory_mb=128))
    assert res.verdict is Verdict.TIME_LIMIT


def test_fork_bomb_is_contained(sandbox):
    _require(sandbox, "process limit")
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    res = sandbox.run(bomb, limits=Limits(timeout_s=1, memory_mb=128, max_processes=16))
    assert res.verdict is Verdict.TIME_LIMIT


def test_process_count_is_limited(sandbox):
    _require(sandbox, "process limit")
    prog = ("import os, time\nn = 0\ntry:\n    for _ in range(200):\n        if os.fork() == 0:\n"
            "            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\nprint(n)\n")
    res = sandbox.run(prog, limits=Limits(timeout_s=10, memory_mb=128, max_processes=16))
    assert res.verdict is Verdict.OK, res
    assert int(res.stdout) < 16


def test_memory_bomb_single_allocation(sandbox):
    res = sandbox.run("x = bytearray(8 * 1024 ** 3)\n", limits=Limits(timeout_s=10, memory_mb=128))
    assert res.verdict is Verdict.MEMORY_LIMIT


def test_memory_bomb_gradual(sandbox):
    prog = "xs = []\nwhile True:\n    xs.append(bytearray(1 << 20))\n"
    res = sandbox.run(prog, limits=Limits(timeout_s=20, memory_mb=128))
    assert res.verdict is Verdict.MEMORY_LIMIT
    assert res.peak_memory_mb is not None and res.peak_memory_mb <= 128


def test_memory_bomb_across_processes_hits_the_cgroup(sandbox):
    _require(sandbox, "memory cgroup")
    _require(sandbox, "process limit")
    # Each child stays under RLIMIT_AS; together they exceed the tree's cgroup limit.
    prog = ("import os, time\nfor _ in range(6):\n    if os.fork() == 0:\n        b = bytearray(100 << 20)\n"
            "        for i in range(0, len(b), 4096):\n            b[i] = 1\n        time.sleep(1)\n        os._exit(0)\n"
            "for _ in range(6):\n    os.wait()\n")
    res = sandbox.run(prog, limits=Limits(timeout_s=10, memory_mb=128, max_processes=16, tmpfs_mb=16))
    assert res.verdict is Verdict.MEMORY_LIMIT, res


def test_huge_output_is_capped(sandbox):
    res = sandbox.run("while True:\n    print('x' * 1000)\n", limits=FAST)
    assert res.verdict is Verdict.OUTPUT_LIMIT
    assert res.stdout_truncated and len(res.stdout) == FAST.max_output_bytes


def test_huge_output_ignoring_sigxfsz_is_capped(sandbox):
    prog = ("import signal, sys\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\nwhile True:\n    try:\n"
            "        sys.stdout.write('y' * 4096)\n        sys.stdout.flush()\n    except OSError:\n        pass\n")
    res = sandbox.run(prog, limits=Limits(timeout_s=1, memory_mb=128, max_output_bytes=64 << 10))
    assert res.verdict is Verdict.OUTPUT_LIMIT
    assert len(res.stdout) == 64 << 10


def test_big_file_in_workdir_is_capped(sandbox):
    prog = "with open('big.bin', 'wb') as f:\n    f.write(b'z' * (8 << 20))\n"
    res = sandbox.run(prog, limits=FAST)
    assert res.verdict in (Verdict.OUTPUT_LIMIT, Verdict.RUNTIME_ERROR), res


def test_writing_outside_the_working_dir_fails(sandbox, tmp_path):
    _require(sandbox, "file protection")
    target = tmp_path / "planted.txt"
    token = uuid.uuid4().hex[:12]
    shared = [f"/tmp/r1-planted-{token}", f"/var/tmp/r1-planted-{token}", f"/dev/shm/r1-planted-{token}"]
    prog = ("import os\nhits = []\nfor p in %r:\n"
            "    try:\n        open(p, 'w').write('x')\n        hits.append(p)\n    except OSError:\n        pass\n"
            "os.makedirs('/tmp/r1-planted-dir-%s/sub', exist_ok=True) if os.access('/tmp', os.W_OK) else None\n"
            "open('inside.txt', 'w').write('fine')\nprint(open('inside.txt').read(), hits)\n"
            ) % ([str(target), "/etc/r1-sandbox-planted", os.path.expanduser("~/planted"), *shared], token)
    res = sandbox.run(prog, limits=FAST)
    assert res.verdict is Verdict.OK, res
    assert res.stdout.startswith("fine"), res.stdout
    assert not target.exists()
    assert not os.path.exists("/etc/r1-sandbox-planted")
    # Shared temp dirs: private tmpfs with a mount namespace, cleaned up after the run without.
    assert not any(os.path.exists(p) for p in shared + [f"/tmp/r1-planted-dir-{token}"])


def test_deleting_host_files_fails(sandbox, tmp_path):
    _require(sandbox, "file protection")
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    victim = victim_dir / "precious.txt"
    victim.write_text("keep me")
    prog = ("import os, shutil\nfor f in (lambda: os.remove(%r), lambda: shutil.rmtree(%r), lambda: os.rename(%r, '/tmp/x')):\n"
            "    try:\n        f()\n    except OSError as e:\n        print(type(e).__name__)\n") % (str(victim), str(victim_dir), str(victim))
    res = sandbox.run(prog, limits=FAST)
    assert res.verdict is Verdict.OK, res
    assert victim.read_text() == "keep me"


def test_environment_secrets_are_not_visible(sandbox, monkeypatch):
    _require(sandbox, "unprivileged or pid ns")
    secret = f"hunter2-{uuid.uuid4().hex}"
    monkeypatch.setenv("R1_TEST_API_KEY", secret)
    prog = ("import os\nprint(dict(os.environ))\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n        try:\n"
            "            print(open('/proc/%s/environ' % p, 'rb').read())\n        except OSError:\n            pass\n")
    res = sandbox.run(prog, limits=FAST)
    assert res.verdict is Verdict.OK, res
    assert secret not in res.stdout and "R1_TEST_API_KEY" not in res.stdout


def test_network_connection_fails(sandbox):
    _require(sandbox, "network")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    prog = ("import socket\nfor addr in [('127.0.0.1', %d), ('192.0.2.1', 80), ('1.1.1.1', 53)]:\n    try:\n"
            "        socket.create_connection(addr, timeout=1)\n        print('connected', addr)\n"
            "    except OSError as e:\n        print('blocked', addr, e)\n") % port
    try:
        res = sandbox.run(prog, limits=FAST)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached the host's loopback
    finally:
        listener.close()
    assert res.verdict is Verdict.OK, res
    assert "connected" not in res.stdout and res.stdout.count("blocked") == 3


def test_background_process_does_not_outlive_the_run(sandbox):
    token = f"r1bg{uuid.uuid4().hex[:12]}"
    prog = ("import os, subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', %r], start_new_session=True)\n"
            "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', %r])\n"
            "    os._exit(0)\ntime.sleep(0.3)\nprint('parent exits')\n") % (token, token)
    res = sandbox.run(prog, limits=FAST)
    assert res.verdict is Verdict.OK, res
    assert _procs_with(token) == []


def test_background_process_killed_on_timeout(sandbox):
    token = f"r1bg{uuid.uuid4().hex[:12]}"
    prog = ("import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', %r], start_new_session=True)\n"
            "time.sleep(60)\n") % token
    res = sandbox.run(prog, limits=Limits(timeout_s=1, memory_mb=128))
    assert res.verdict is Verdict.TIME_LIMIT
    assert _procs_with(token) == []


def test_killing_the_parent_and_everything_fails(sandbox):
    _require(sandbox, "unprivileged or pid ns")
    prog = ("import os, signal\nfor pid in (os.getppid(), 1, -1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
            "        print('sent', pid)\n    except OSError as e:\n        print('refused', pid, type(e).__name__)\nprint('alive')\n")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        res = sandbox.run(prog, limits=FAST)
        assert sleeper.poll() is None, "kill(-1) from the sandbox reached a host process"
    finally:
        sleeper.kill()
        sleeper.wait()
    # OK (not SANDBOX_ERROR) means its launcher and reaper survived to report the status.
    assert res.verdict is Verdict.OK, res
    lines = res.stdout.splitlines()
    assert lines[0].startswith("refused") and lines[1].startswith("refused"), lines
    # kill(-1) may report success (Linux counts attempts, not deliveries) but reaches no
    # process of another uid: the host sleeper above is still alive.
    assert lines[-1] == "alive"


def test_deep_recursion_is_a_runtime_error(sandbox):
    res = sandbox.run("def f(n):\n    return f(n + 1)\nf(0)\n", limits=FAST)
    assert res.verdict is Verdict.RUNTIME_ERROR
    assert "RecursionError" in res.detail


def test_c_stack_overflow_is_a_runtime_error(sandbox):
    prog = "import sys\nsys.setrecursionlimit(10 ** 7)\nx = []\nfor _ in range(300000):\n    x = [x]\nrepr(x)\n"
    res = sandbox.run(prog, limits=Limits(timeout_s=20, memory_mb=256))
    assert res.verdict is Verdict.RUNTIME_ERROR, res
    assert res.signal == 11  # SIGSEGV


def test_ctypes_segfault_is_a_runtime_error(sandbox):
    res = sandbox.run("import ctypes\nctypes.string_at(0)\n", limits=FAST)
    assert res.verdict is Verdict.RUNTIME_ERROR and res.signal == 11


def test_ctypes_privileged_calls_fail(sandbox):
    _require(sandbox, "unprivileged or pid ns")
    prog = ("import ctypes\nl = ctypes.CDLL(None, use_errno=True)\n"
            "print(l.setuid(0), l.unshare(0x10000000), l.unshare(0x40000000),\n"
            "      l.mount(b'none', b'/tmp', b'tmpfs', 0, None), l.ptrace(16, 1, 0, 0), l.chroot(b'/'))\n")
    res = sandbox.run(prog, limits=FAST)
    assert res.verdict is Verdict.OK, res
    assert res.stdout.split() == ["-1"] * 6


def test_ctypes_raw_socket_syscall_fails(sandbox):
    _require(sandbox, "network")
    # socket(AF_INET, SOCK_STREAM, 0) straight through libc's syscall(): no Python in the way.
    prog = "import ctypes\nl = ctypes.CDLL(None)\nfd = l.syscall(41, 2, 1, 0)\nprint(fd)\n"
    res = sandbox.run(prog, limits=FAST)
    if sandbox.isolation.seccomp:
        assert res.stdout.split() == ["-1"]
    else:  # a socket in an empty network namespace: it exists but reaches nothing
        assert res.verdict is Verdict.OK


def test_unicode_and_binary_output_survive(sandbox):
    res = sandbox.run("import sys\nprint('héllo ✓')\nsys.stdout.flush()\nsys.stdout.buffer.write(b'\\xff\\n')\n", limits=FAST)
    assert res.verdict is Verdict.OK
    assert res.stdout.startswith("héllo ✓\n")

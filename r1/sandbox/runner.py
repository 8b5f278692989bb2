"""`Sandbox.run`: one untrusted Python program, one stdin, one verdict.

Host side of a run: a private host directory holds the program, stdin, the output files
(opened here, handed to the child as fds, so caps are enforced by RLIMIT_FSIZE rather than
by a reader racing the writer) and the status file the reaper writes. The launcher does
the isolation (see launcher.py); this side enforces a backstop timeout, kills whatever a
run leaves behind through its cgroup, classifies the verdict and cleans up.
"""
from __future__ import annotations

import ast
import marshal
import math
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from . import cgroups, probe
from .limits import Limits, SandboxConfig
from .result import RunResult, Verdict

# Launcher/reaper Python processes and their page tables, charged to the memory cgroup on
# top of the program's own limit.
_LAUNCHER_OVERHEAD_MB = 64
# Seconds past the timeout before the host kills the tree itself: the reaper's own alarm
# normally fires first; this covers a launcher that hung in setup.
_BACKSTOP_GRACE_S = 5.0


@dataclass(frozen=True)
class _Files:
    root: str
    program: str
    stdin: str
    stdout: str
    stderr: str
    status: str
    spec: str
    workdir: str


class Sandbox:
    """Runs programs under the strongest isolation this host allows (see `isolation`).

    Thread-safe: a pool calls `run` from many threads. The isolation plan is probed on
    first use and kept on the instance (no module-level state).
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._plan: probe.IsolationPlan | None = None
        self._lock = threading.Lock()

    @property
    def isolation(self) -> probe.IsolationPlan:
        with self._lock:
            if self._plan is None:
                self._plan = probe.plan(self.config)
            return self._plan

    def check(self) -> probe.IsolationPlan:
        plan = self.isolation
        if not probe.meets(plan.level, self.config.require):
            raise probe.SandboxUnavailable(
                f"this host gives '{plan.level}' isolation but SandboxConfig.require='{self.config.require}'; "
                f"missing: {'; '.join(plan.warnings) or 'see r1 sandbox doctor'}")
        return plan

    def run(self, source: str | bytes, stdin: str | bytes = b"", limits: Limits | None = None,
            args: tuple[str, ...] = ()) -> RunResult:
        limits = limits or Limits()
        plan = self.check()
        program = source.encode() if isinstance(source, str) else source
        data = stdin.encode() if isinstance(stdin, str) else stdin
        lo, hi = self.config.uid_range
        # A uid of its own per run: RLIMIT_NPROC then counts only this run, concurrent runs
        # cannot signal, ptrace or read each other, and its leftovers are recognisable.
        uid = lo + secrets.randbelow(hi - lo + 1) if plan.drop_uid else os.geteuid()
        try:
            root = tempfile.mkdtemp(prefix="r1-sandbox-", dir=self.config.tmp_root)
        except OSError as e:
            return _host_failure(plan, e)
        workdir = "/tmp"  # a private tmpfs inside the mount namespace
        try:
            if not plan.namespaces["mount"]:
                workdir = self._host_workdir(plan, root)
            return self._run(plan, program, data, limits, args, root, workdir, uid)
        except OSError as e:
            return _host_failure(plan, e)
        finally:
            shutil.rmtree(root, ignore_errors=True)
            if workdir != "/tmp" and not workdir.startswith(root + os.sep):
                shutil.rmtree(os.path.dirname(workdir), ignore_errors=True)
            if plan.drop_uid and not plan.namespaces["mount"]:
                _remove_owned(uid)

    def _host_workdir(self, plan: probe.IsolationPlan, root: str) -> str:
        """Without a mount namespace the working dir is a host directory the sandbox uid
        must reach: below `root` (made traversable, not listable) if every ancestor lets
        others through, else a fresh one in the system temp dir."""
        os.chmod(root, 0o711)
        unprivileged = plan.drop_uid or plan.user_ns_child
        parent = root
        if unprivileged and not _traversable(root):
            parent = tempfile.mkdtemp(prefix="r1-sandbox-work-")
            os.chmod(parent, 0o711)
            if not _traversable(parent):
                shutil.rmtree(parent, ignore_errors=True)
                raise probe.SandboxUnavailable(
                    f"no working dir the sandbox uid can reach: {root} and {tempfile.gettempdir()} have a parent "
                    "without o+x; set SandboxConfig.tmp_root to a directory under a world-traversable path")
        workdir = os.path.join(parent, "work")
        os.mkdir(workdir, 0o700)
        return workdir

    def _run(self, plan: probe.IsolationPlan, program: bytes, stdin: bytes, limits: Limits,
             args: tuple[str, ...], root: str, workdir: str, uid: int) -> RunResult:
        files = _Files(root, *(os.path.join(root, n) for n in ("program.py", "stdin", "stdout", "stderr", "status", "spec")),
                       workdir=workdir)
        _write(files.program, program, 0o600)
        _write(files.stdin, stdin, 0o600)
        if not plan.namespaces["mount"]:
            _write(os.path.join(workdir, "program.py"), program, 0o444)
            if plan.drop_uid:
                os.chown(workdir, uid, uid)
        cgroup = None
        if plan.cgroup is not None:
            mem = (limits.memory_mb + 2 * limits.tmpfs_mb + _LAUNCHER_OVERHEAD_MB) << 20
            cgroup = cgroups.RunCgroup(plan.cgroup, max_tasks=limits.max_processes + 2, memory_bytes=mem)
        status_fd = os.open(files.status, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        go_r, go_w = os.pipe() if cgroup is not None else (None, None)
        try:
            spec = self._spec(plan, limits, files, uid, status_fd, go_r, args)
            _write(files.spec, marshal.dumps(spec), 0o600)
            started = time.monotonic()
            timed_out = self._launch(files, (status_fd, go_r), limits, cgroup, go_w)
            host_wall = time.monotonic() - started
            oom = cgroup.oom_killed() if cgroup else False
        finally:
            for fd in (status_fd, go_r, go_w):
                if fd is not None:
                    _close_quietly(fd)
            if cgroup is not None:
                cgroup.close()
        return _classify(files, limits, plan, timed_out, oom, host_wall)

    def _spec(self, plan: probe.IsolationPlan, limits: Limits, files: _Files, uid: int, status_fd: int,
              go_fd: int | None, args: tuple[str, ...]) -> dict:
        cpu = max(1, math.ceil(limits.cpu_limit_s))
        rlimits: dict[str, object] = {
            "AS": limits.memory_mb << 20,
            "CPU": [cpu, cpu + 1],  # SIGXCPU at the soft limit, SIGKILL a second later
            "FSIZE": limits.max_output_bytes + 1,  # one byte past the cap proves "over the cap"
            "NOFILE": limits.max_open_files,
            "CORE": 0,
        }
        if plan.drop_uid:
            rlimits["NPROC"] = limits.max_processes
        elif os.geteuid() != 0:
            # Counted over every process of this user, so leave room for the ones running.
            rlimits["NPROC"] = _count_user_tasks(os.geteuid()) + limits.max_processes
        env = dict(self.config.env, HOME=files.workdir, TMPDIR=files.workdir)
        userns = plan.namespaces["user"]
        return {
            "parent_pid": os.getpid(),
            "program_path": files.program,
            "program_name": "program.py",
            "write_program": plan.namespaces["mount"],
            "workdir": files.workdir,
            "tmpfs_mb": limits.tmpfs_mb,
            # In a rootless user namespace only uid 0 is mapped, so the tmpfs belongs to it.
            "tmpfs_uid": 0 if userns else uid,
            "tmpfs_gid": 0 if userns else uid,
            "uid": uid,
            "gid": uid,
            "drop_uid": plan.drop_uid,
            "user_ns_child": plan.user_ns_child,
            "namespaces": plan.namespaces,
            "go_fd": go_fd,
            "seccomp": plan.seccomp,
            "expose": [[top, list(dirs)] for top, dirs in plan.expose],
            "keep_dirs": list(plan.keep_dirs),
            "rlimits": rlimits,
            "timeout_s": limits.timeout_s,
            "python": self.config.python,
            "python_flags": list(self.config.python_flags),
            "args": list(args),
            "env": env,
            "status_fd": status_fd,
        }

    def _launch(self, files: _Files, fds: tuple[int | None, ...], limits: Limits,
                cgroup: cgroups.RunCgroup | None, go_w: int | None) -> bool:
        """Start the launcher, place it in its cgroups, wait; True if the backstop killed it."""
        with open(files.stdin, "rb") as fin, open(files.stdout, "wb") as fout, open(files.stderr, "wb") as ferr:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", probe.LAUNCHER, files.spec],
                stdin=fin, stdout=fout, stderr=ferr, pass_fds=tuple(fd for fd in fds if fd is not None),
                env={}, cwd=files.root,
                start_new_session=True,  # its own process group, killable as one
            )
        if cgroup is not None and go_w is not None:
            try:
                cgroup.add(proc.pid)
                os.write(go_w, b"1")
            except OSError:
                os.write(go_w, b"0")  # the launcher refuses to go on: a sandbox error, not a run
        backstop = limits.timeout_s + _BACKSTOP_GRACE_S
        if _wait_exit(proc, backstop):
            return False
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        return True


def _host_failure(plan: probe.IsolationPlan, err: OSError) -> RunResult:
    """The host side failed (a full disk, a cgroup that cannot be made): the program did
    not run, which is no verdict on it. Callers get SANDBOX_ERROR, not a crash of a batch."""
    return RunResult(verdict=Verdict.SANDBOX_ERROR, exit_code=None, signal=None, wall_s=0.0, cpu_s=None,
                     peak_memory_mb=None, stdout="", stderr="", stdout_truncated=False, stderr_truncated=False,
                     detail=f"host setup failed: {err}", isolation=plan.level, warnings=plan.warnings)


def _wait_exit(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait up to `timeout` s; True if it exited. A pidfd wakes us at once, where
    Popen.wait(timeout) would poll with sleeps of up to 50 ms per run."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if ready:
        proc.wait()
        return True
    return False


def _classify(files: _Files, limits: Limits, plan: probe.IsolationPlan, backstop_killed: bool,
              oom_killed: bool, host_wall: float) -> RunResult:
    status: dict = {}
    setup_error = ""
    with open(files.status, "rb") as f:
        for line in f.read().splitlines():
            rec = _loads(line)
            if "setup_error" in rec:
                setup_error = setup_error or rec["setup_error"]
            elif "exit_code" in rec:
                status = rec
    stdout, out_over = _read_capped(files.stdout, limits.max_output_bytes)
    stderr, err_over = _read_capped(files.stderr, limits.max_output_bytes)
    exit_code, sig = status.get("exit_code"), status.get("signal")
    cpu = status.get("cpu_s")
    wall = status.get("wall_s", host_wall)
    peak = status["maxrss_kb"] / 1024 if "maxrss_kb" in status else None
    last_err = next((ln for ln in reversed(stderr.splitlines()) if ln.strip()), "")

    if setup_error or (not status and not backstop_killed):
        verdict, detail = Verdict.SANDBOX_ERROR, setup_error or "launcher exited without a status record"
    elif out_over or err_over or sig == signal.SIGXFSZ:
        verdict, detail = Verdict.OUTPUT_LIMIT, f"output over {limits.max_output_bytes} bytes"
    elif oom_killed:
        verdict, detail = Verdict.MEMORY_LIMIT, "killed by the memory cgroup (tree over its memory limit)"
    elif backstop_killed or status.get("timed_out"):
        verdict, detail = Verdict.TIME_LIMIT, f"wall clock over {limits.timeout_s} s"
    elif sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu is not None and cpu >= limits.cpu_limit_s):
        verdict, detail = Verdict.TIME_LIMIT, f"CPU time over {limits.cpu_limit_s} s"
    elif exit_code != 0 and last_err.startswith("MemoryError"):
        verdict, detail = Verdict.MEMORY_LIMIT, f"MemoryError under the {limits.memory_mb} MiB address-space limit"
    elif sig is not None:
        verdict, detail = Verdict.RUNTIME_ERROR, f"killed by signal {signal.Signals(sig).name if sig in signal.valid_signals() else sig}"
    elif exit_code != 0:
        verdict, detail = Verdict.RUNTIME_ERROR, last_err[:500] or f"exit code {exit_code}"
    else:
        verdict, detail = Verdict.OK, ""
    if backstop_killed:
        wall = host_wall
    return RunResult(
        verdict=verdict, exit_code=exit_code, signal=sig, wall_s=round(wall, 6),
        cpu_s=None if cpu is None else round(cpu, 6), peak_memory_mb=None if peak is None else round(peak, 2),
        stdout=stdout, stderr=stderr, stdout_truncated=out_over, stderr_truncated=err_over,
        detail=detail, isolation=plan.level, warnings=plan.warnings,
    )


def _read_capped(path: str, cap: int) -> tuple[str, bool]:
    with open(path, "rb") as f:
        data = f.read(cap + 1)
    return data[:cap].decode("utf-8", errors="replace"), len(data) > cap


def _write(path: str, data: bytes | str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def _loads(line: bytes) -> dict:
    try:
        rec = ast.literal_eval(line.decode())
    except (ValueError, SyntaxError, UnicodeDecodeError):
        return {}
    return rec if isinstance(rec, dict) else {}


# World-writable places a program can write to on the host when there is no mount
# namespace to give it private ones.
_SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm")


def _remove_owned(uid: int) -> None:
    """Delete what a run's (unique) uid left in the shared temp dirs; nothing else can own it."""
    for parent in _SHARED_TMP:
        try:
            entries = list(os.scandir(parent))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


def _traversable(path: str) -> bool:
    """Can a uid that is neither owner nor group member reach into `path`?"""
    path = os.path.realpath(path)
    while True:
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except OSError:
            return False
        if path == os.sep:
            return True
        path = os.path.dirname(path)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _count_user_tasks(uid: int) -> int:
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    n += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                pass
    return n

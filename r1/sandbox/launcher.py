"""Child side of the sandbox: set up isolation, then exec the untrusted program.

Run by `runner.py` as `python -I -S launcher.py SPEC` (SPEC: a marshal'd dict) or with
`--probe`, as a new session leader, with stdin/stdout/stderr already pointing at files the
parent opened and the status file at fd `spec["status_fd"]`. It depends only on the standard library and `seccomp.py`
next to it, because it runs before and outside anything the project installs.

Process tree (pid namespace available):

    launcher L (root, host pid ns) --fork--> reaper R (pid 1 of a new pid ns)
                                                  --fork--> program P (unprivileged, exec python)

Without a pid namespace L itself is the reaper, made a child subreaper so orphans of P
come back to it. The reaper waits for P, then kills everything else that P left behind
(pid 1: `kill(-1)`; subreaper: every descendant) and writes one status line.
A background process that outlives P therefore never outlives the run.

Order matters and is commented where it does: the host moves L into the run's cgroups
before L forks anything, mounts are changed only after the mount namespace is private,
rlimits and the uid drop happen in P just before exec, and PDEATHSIG is set after the uid
change (which clears it).
"""
from __future__ import annotations

import ctypes
import errno
import marshal
import os
import resource
import sys
import time

# `_signal` is what `signal` wraps in enums; importing enum would cost this short-lived
# process a few ms per run, and it only needs the functions and the integer constants.
import _signal as signal

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NS_FLAGS = {"mount": CLONE_NEWNS, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC, "pid": CLONE_NEWPID, "net": CLONE_NEWNET}

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 32, 4096, 8192, 16384, 1 << 18
MNT_DETACH = 2
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
SYS_MOUNT_SETATTR = 442  # same number on every architecture (new syscalls share one table)

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

RLIMITS = {
    "AS": "RLIMIT_AS", "CPU": "RLIMIT_CPU", "FSIZE": "RLIMIT_FSIZE", "NOFILE": "RLIMIT_NOFILE",
    "NPROC": "RLIMIT_NPROC", "CORE": "RLIMIT_CORE", "MEMLOCK": "RLIMIT_MEMLOCK", "MSGQUEUE": "RLIMIT_MSGQUEUE",
}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    ret = _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))
    _check(ret, f"mount({source!r}, {target!r}, {fstype!r}, {flags:#x})")


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def make_root_readonly() -> None:
    """Make every mount in this (private) namespace read-only and nosuid.

    Not nodev: /dev/null, /dev/urandom and friends must keep working; device nodes the
    sandbox uid may open are only the world-accessible ones anyway.

    mount_setattr(AT_RECURSIVE) does it in one call (Linux >= 5.12); older kernels get a
    bind remount of each mount point listed in mountinfo.
    """
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    ret = _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr))
    if ret == 0:
        return
    if ctypes.get_errno() != errno.ENOSYS:
        _check(ret, "mount_setattr(/, RDONLY, recursive)")
    with open("/proc/self/mountinfo") as f:
        points = [(fields[4].encode().decode("unicode_escape"), fields[5].split(","))
                  for fields in (line.split() for line in f)]
    for point, opts in points:
        # A bind remount replaces the per-mount flags: keep the nodev/noexec a mount had.
        keep = (MS_NODEV if "nodev" in opts else 0) | (MS_NOEXEC if "noexec" in opts else 0)
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | keep)
        except OSError as e:  # a mount hidden under another one can't be reached; it is covered anyway
            if e.errno not in (errno.ENOENT, errno.EINVAL, errno.EACCES):
                raise


def write_status(fd: int, record: dict) -> None:
    # repr of a dict of str/int/float/bool/None: read back with ast.literal_eval. Not json:
    # importing json (and re, enum) would cost this short-lived process several ms per run.
    os.write(fd, (repr(record) + "\n").encode())


def wait_for_cgroups(go_fd: int) -> None:
    """Block until the host has moved this process into the run's cgroups.

    The host does the move while this interpreter starts up (moving a task between cgroup
    v1 groups measured ~10 ms on the project's machines; overlapped, it costs nothing).
    Nothing forks before the byte arrives, so every descendant is counted and charged.
    """
    got = os.read(go_fd, 1)
    os.close(go_fd)
    if got != b"1":
        raise RuntimeError("host could not place the launcher in its cgroups")


def setup_mounts(spec: dict) -> None:
    """Read-only view of the host, private tmpfs for the working dir, /tmp and /dev/shm."""
    # Private first: otherwise the tmpfs mounts below would propagate to the host.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    make_root_readonly()
    # Interpreter dirs below /tmp or /dev/shm are held open by fd before the tmpfs mounts hide
    # them, then bound back read-only through /proc/self/fd (the path alone no longer reaches them).
    kept = {d: os.open(d, os.O_PATH | os.O_DIRECTORY) for d in spec.get("keep_dirs", []) if os.path.isdir(d)}
    if spec["expose"]:
        expose(spec["expose"], spec["workdir"])
    size = f"size={spec['tmpfs_mb']}m"
    owner = f"uid={spec['tmpfs_uid']},gid={spec['tmpfs_gid']}"
    mount("tmpfs", spec["workdir"], "tmpfs", MS_NOSUID | MS_NODEV, f"{size},mode=0700,{owner}")
    for extra in ("/tmp", "/dev/shm"):
        if extra != spec["workdir"] and os.path.isdir(extra):
            mount("tmpfs", extra, "tmpfs", MS_NOSUID | MS_NODEV, f"{size},mode=1777")
    for d, fd in kept.items():
        os.makedirs(d, mode=0o755, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", d, None, MS_BIND | MS_REC)
        mount(None, d, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)


def expose(groups: list, staging: str) -> None:
    """Make directories the interpreter needs reachable by the sandbox uid.

    An interpreter under a private home (pyenv in /root, conda in /home/u) sits below a
    0700 directory the unprivileged uid cannot traverse. Each such directory `top` is
    covered by an empty read-only tmpfs into which only the needed `dirs` are bind-mounted
    back (read-only), so the rest of that home stays hidden rather than exposed. The binds
    are staged on a scratch tmpfs because `top` is hidden once its tmpfs is mounted.
    """
    mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700")
    staged = []
    for i, (top, dirs) in enumerate(groups):
        for j, d in enumerate(dirs):
            slot = os.path.join(staging, f"{i}-{j}")
            os.mkdir(slot)
            mount(d, slot, None, MS_BIND | MS_REC)
            mount(None, slot, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
            staged.append((top, d, slot))
    for top, _ in groups:
        mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for top, d, slot in staged:
        os.makedirs(d, mode=0o755, exist_ok=True)
        mount(slot, d, None, MS_MOVE)
    for top, _ in groups:
        mount(None, top, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _check(_libc.umount2(staging.encode(), MNT_DETACH), f"umount2({staging!r})")


def exec_program(spec: dict, program: bytes, seccomp_module) -> None:
    """In P: write the program, apply limits, drop to the sandbox uid, exec. Never returns."""
    status_fd = spec["status_fd"]
    try:
        workdir = spec["workdir"]
        os.chdir(workdir)
        path = os.path.join(workdir, spec["program_name"])
        if spec["write_program"]:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            os.write(fd, program)
            os.close(fd)
        for name, value in spec["rlimits"].items():
            soft, hard = value if isinstance(value, list) else (value, value)
            resource.setrlimit(getattr(resource, RLIMITS[name]), (soft, hard))
        if spec["drop_uid"]:
            os.setgroups([])
            os.setresgid(spec["gid"], spec["gid"], spec["gid"])
            os.setresuid(spec["uid"], spec["uid"], spec["uid"])
        if spec["user_ns_child"]:
            enter_child_user_ns()
        # After the uid change, which clears it: P dies with its reaper.
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # Without it a setuid binary (su, mount, ...) would hand root back to P.
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        if seccomp_module is not None:
            seccomp_module.install(_libc)
        os.set_inheritable(status_fd, False)
        argv = [spec["python"], *spec["python_flags"], path, *spec["args"]]
        os.execve(spec["python"], argv, spec["env"])
    except BaseException as e:  # report any setup failure to the parent, never run unconfined
        try:
            write_status(status_fd, {"setup_error": f"program setup: {type(e).__name__}: {e}"})
        finally:
            os._exit(125)


def enter_child_user_ns() -> None:
    """Non-root hosts: P moves into a nested user namespace as an unprivileged uid.

    L's own user namespace made it root there (needed for the mounts); a nested namespace
    owned by that root, mapping its uid 1000 to it, leaves P without any capability over
    L's mounts, so the read-only view cannot be remounted.
    """
    outer_uid, outer_gid = os.getuid(), os.getgid()
    unshare(CLONE_NEWUSER)
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"1000 {outer_uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"1000 {outer_gid} 1")
    os.setresgid(1000, 1000, 1000)
    os.setresuid(1000, 1000, 1000)


def descendants(root: int) -> list[int]:
    """Live (non-zombie) pids whose parent chain leads to `root`, read from /proc."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces and parens: state and ppid follow the last ')'.
        state, ppid = stat[stat.rfind(b")") + 2:].split()[:2]
        if state != b"Z":
            parent[int(entry)] = int(ppid)
    found, frontier = [], {root}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier}
        found += frontier
    return found


def kill_rest(is_ns_init: bool) -> None:
    """SIGKILL every process the program left behind (not the reaper itself)."""
    if is_ns_init:
        try:
            os.kill(-1, signal.SIGKILL)  # pid 1 of the namespace: everything but itself
        except ProcessLookupError:
            pass
        return
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def reap_all(is_ns_init: bool, rounds: int = 400) -> bool:
    """Kill and reap until no child is left; False if something kept forking past `rounds`.

    Never a blocking wait(-1): a process forked between the kill and the wait would hang it.
    """
    for _ in range(rounds):
        kill_rest(is_ns_init)
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                break
        time.sleep(0.002)
    return False


def reap(spec: dict, child: int, is_ns_init: bool) -> None:
    """Wait for P, kill whatever it left behind, reap everything, write the status line."""
    timed_out = []

    def on_alarm(signum, frame) -> None:
        # Only kill here: reaping in a handler could steal P's exit status from wait4 below.
        timed_out.append(True)
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
        kill_rest(is_ns_init)

    started = time.monotonic()
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, spec["timeout_s"])
    record: dict = {}
    while True:
        try:
            pid, status, ru = os.wait4(-1, 0)
        except ChildProcessError:
            break
        if pid == child:
            record = {
                "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "cpu_s": ru.ru_utime + ru.ru_stime,
                "maxrss_kb": ru.ru_maxrss,
                "wall_s": time.monotonic() - started,
            }
            break
    signal.setitimer(signal.ITIMER_REAL, 0)
    record["leftovers_killed"] = reap_all(is_ns_init)
    record["timed_out"] = bool(timed_out)
    write_status(spec["status_fd"], record)


def run(spec: dict) -> int:
    with open(spec["program_path"], "rb") as f:
        program = f.read()
    # Die with the parent (a killed trainer must not leave sandboxes running).
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != spec["parent_pid"]:
        return 125
    if spec["go_fd"] is not None:
        wait_for_cgroups(spec["go_fd"])
    seccomp_module = None
    if spec["seccomp"]:
        # Imported by root before any mount or uid change, so its file need not be
        # readable from inside the sandbox.
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import seccomp as seccomp_module  # noqa: PLC0415
    ns = spec["namespaces"]
    flags = sum(NS_FLAGS[name] for name, on in ns.items() if on and name in NS_FLAGS)
    if ns.get("user"):
        uid, gid = os.getuid(), os.getgid()
        unshare(CLONE_NEWUSER | flags)
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"0 {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"0 {gid} 1")
    elif flags:
        unshare(flags)
    if ns.get("mount"):
        setup_mounts(spec)
    if ns.get("pid"):
        init = os.fork()
        if init == 0:
            try:
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                # A fresh /proc shows only this namespace's processes (no host pids, no
                # other runs' environ or cmdline).
                if ns.get("mount"):
                    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                child = os.fork()
                if child == 0:
                    exec_program(spec, program, seccomp_module)
                reap(spec, child, is_ns_init=True)
            except BaseException as e:
                write_status(spec["status_fd"], {"setup_error": f"pid namespace init: {type(e).__name__}: {e}"})
                os._exit(125)
            os._exit(0)
        _, status = os.waitpid(init, 0)
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 125
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    child = os.fork()
    if child == 0:
        exec_program(spec, program, seccomp_module)
    reap(spec, child, is_ns_init=False)
    return 0


def probe() -> dict:
    """Which namespaces can this process create? Each is tried in a throwaway child."""
    results = {}
    rootless = os.geteuid() != 0
    for name, flag in {"user": 0, **NS_FLAGS}.items():
        pid = os.fork()
        if pid == 0:
            try:
                unshare((CLONE_NEWUSER if rootless or name == "user" else 0) | flag)
                if name == "mount" and not rootless:
                    mount(None, "/", None, MS_REC | MS_PRIVATE)
                    make_root_readonly()
                os._exit(0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        results[name] = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    return {"namespaces": results, "euid": os.geteuid()}


def main(argv: list[str]) -> int:
    if argv[1:] == ["--probe"]:
        print(repr(probe()))
        return 0
    with open(argv[1], "rb") as f:
        spec = marshal.load(f)  # written by runner.py with marshal.dump, for the same reason
    try:
        return run(spec)
    except BaseException as e:  # anything here means the program did not run confined
        write_status(spec["status_fd"], {"setup_error": f"launcher: {type(e).__name__}: {e}"})
        return 125


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    # No interpreter teardown: nothing is left to clean up, and skipping it returns the
    # verdict to the host a few ms sooner on every run.
    os._exit(code)

"""What isolation this host allows, decided once per `Sandbox` by trying each mechanism.

`plan()` turns the probe into an `IsolationPlan`: what every run will request from the
launcher, one line per mechanism for `r1 sandbox doctor`, the level reached and warnings
for whatever is missing. Nothing is assumed from the kernel version or distribution:
namespaces are tried in a throwaway child, cgroups by making a group.
"""
from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field

from . import cgroups, seccomp
from .limits import LEVELS, SandboxConfig

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher.py")


class SandboxUnavailable(RuntimeError):
    """The host cannot give the isolation level the config requires."""


@dataclass(frozen=True)
class Mechanism:
    name: str
    active: bool
    detail: str


@dataclass(frozen=True)
class IsolationPlan:
    namespaces: dict[str, bool]       # passed to the launcher: user, mount, pid, net, ipc, uts
    drop_uid: bool                    # root host: setresuid to a random unprivileged uid
    user_ns_child: bool               # rootless host: nested user namespace instead
    cgroup: cgroups.CgroupLayout | None
    seccomp: bool
    expose: tuple[tuple[str, tuple[str, ...]], ...]  # see launcher.expose
    nproc_limit: bool                 # RLIMIT_NPROC binds (the program runs as a non-root uid of its own)
    mechanisms: tuple[Mechanism, ...]
    level: str
    warnings: tuple[str, ...] = field(default=())
    # interpreter dirs below /tmp or /dev/shm (a venv in a checkout under /tmp): the private tmpfs
    # mounted there would hide them, so the launcher binds them back read-only (launcher.keep_dirs)
    keep_dirs: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"isolation level must be one of {LEVELS}, got {self.level!r}")
        if self.drop_uid and self.user_ns_child:
            raise ValueError("drop_uid (root host) and user_ns_child (rootless host) exclude each other")

    def to_json(self) -> dict:
        return {
            "level": self.level,
            "mechanisms": {m.name: {"active": m.active, "detail": m.detail} for m in self.mechanisms},
            "warnings": list(self.warnings),
        }


def probe_namespaces(python: str = sys.executable) -> dict[str, bool]:
    """Ask a throwaway launcher which namespaces unshare() grants here."""
    try:
        out = subprocess.run([python, "-I", "-S", LAUNCHER, "--probe"], capture_output=True, env={},
                             timeout=30, check=True, text=True)
        return {k: bool(v) for k, v in ast.literal_eval(out.stdout.strip())["namespaces"].items()}
    except (OSError, subprocess.SubprocessError, ValueError, SyntaxError, KeyError):
        return {}


TMPFS_DIRS = ("/tmp", "/dev/shm")  # get a private tmpfs in the mount namespace (launcher.setup_mounts)


def interpreter_dirs(python: str) -> list[str]:
    """Directories the interpreter needs at run time: its real binary's dir and prefixes."""
    code = ("import json, os, sys; print(json.dumps([os.path.dirname(os.path.realpath(sys.executable)), "
            "sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]))")
    try:
        out = subprocess.run([python, "-I", "-S", "-c", code], capture_output=True, env={}, timeout=30, check=True, text=True)
        dirs = [os.path.realpath(d) for d in json.loads(out.stdout)]
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    # The path we exec may be a venv's symlink (<venv>/bin/python3 -> the real binary): its own
    # directory and the venv root (pyvenv.cfg) must be reachable as well as the real binary's.
    link_dir = os.path.dirname(os.path.abspath(python))
    dirs.append(link_dir)
    if os.path.exists(os.path.join(os.path.dirname(link_dir), "pyvenv.cfg")):
        dirs.append(os.path.dirname(link_dir))
    # Outermost first; a dir inside another needed one is covered by it.
    out_dirs: list[str] = []
    for d in sorted(set(dirs), key=len):
        if not any(d == o or d.startswith(o + os.sep) for o in out_dirs):
            out_dirs.append(d)
    return out_dirs


def blocked_groups(dirs: list[str]) -> list[tuple[str, list[str]]]:
    """(topmost ancestor others cannot traverse, needed dirs below it) for each blocked dir."""
    groups: dict[str, list[str]] = {}
    for d in dirs:
        parts = d.strip(os.sep).split(os.sep)
        for i in range(1, len(parts) + 1):
            anc = os.sep + os.sep.join(parts[:i])
            try:
                mode = os.stat(anc).st_mode
            except OSError:
                break
            if not mode & stat.S_IXOTH:
                if anc != d:
                    groups.setdefault(anc, []).append(d)
                break
    return list(groups.items())


def plan(config: SandboxConfig) -> IsolationPlan:
    root = os.geteuid() == 0
    probed = probe_namespaces() if config.use_namespaces else {}
    ns = {name: bool(probed.get(name)) for name in ("mount", "pid", "net", "ipc", "uts")}
    user_ns = False
    if not root:
        # Rootless, every other namespace needs a user namespace first (probed together).
        user_ns = bool(probed.get("user"))
        if not user_ns:
            ns = dict.fromkeys(ns, False)
    layout, cg_why = cgroups.detect() if config.use_cgroups else (None, "disabled by config")
    drop_uid = root and config.drop_privileges
    user_ns_child = user_ns and config.drop_privileges
    use_seccomp = config.use_seccomp and seccomp.supported()
    pids_cg = layout is not None and "pids" in layout.parents
    mem_cg = layout is not None and "memory" in layout.parents

    mech: list[Mechanism] = []
    warn: list[str] = []
    unprivileged = drop_uid or user_ns_child or not root
    if drop_uid:
        uid_detail = f"random host uid in {config.uid_range[0]}..{config.uid_range[1]} per run, no groups"
    elif user_ns_child:
        uid_detail = "nested user namespace, no capabilities"
    elif not root:
        uid_detail = f"runs as this user (uid {os.geteuid()}), shares its file access"
        warn.append("programs run as your own uid: without a mount namespace they can write your files")
    else:
        uid_detail = "runs as ROOT (drop_privileges disabled)"
        warn.append("programs run as root: no limit on processes without a pids cgroup, full file access")
    mech.append(Mechanism("unprivileged uid", unprivileged, uid_detail))
    mech.append(Mechanism("pid namespace", ns["pid"], "program tree torn down with the namespace" if ns["pid"] else "unavailable: host pids visible, leftovers killed by a subreaper"))
    if ns["net"]:
        net_detail = "fresh network namespace (no interfaces up)"
    elif use_seccomp:
        net_detail = "no network namespace: non-AF_UNIX sockets blocked by seccomp"
        warn.append("no network namespace; network blocked at the socket() syscall by seccomp")
    else:
        net_detail = "NOT blocked (no network namespace, no seccomp filter)"
        warn.append("network is NOT isolated on this host")
    mech.append(Mechanism("network isolation", ns["net"] or use_seccomp, net_detail))
    mech.append(Mechanism("mount namespace", ns["mount"], "read-only view of /, private tmpfs working dir, /tmp, /dev/shm" if ns["mount"] else "unavailable: private working dir only, rest of the filesystem as the uid's permissions allow"))
    if not ns["mount"]:
        warn.append("no mount namespace: the filesystem is protected only by file permissions")
    expose: list[tuple[str, list[str]]] = []
    if drop_uid or user_ns_child:
        blocked = blocked_groups(interpreter_dirs(config.python))
        if blocked and ns["mount"]:
            expose = blocked
            mech.append(Mechanism("interpreter access", True, "re-exposed read-only below a tmpfs over " + ", ".join(t for t, _ in blocked)))
        elif blocked:
            warn.append(f"the interpreter lives below {blocked[0][0]}, which the sandbox uid cannot enter and no mount namespace can re-expose; pass SandboxConfig(python=...) an interpreter outside it")
            mech.append(Mechanism("interpreter access", False, f"blocked by {blocked[0][0]}"))
    mech.append(Mechanism("ipc/uts namespaces", ns["ipc"] and ns["uts"], "private SysV IPC and hostname" if ns["ipc"] and ns["uts"] else "unavailable"))
    nproc = drop_uid or user_ns_child or not root
    if pids_cg:
        proc_detail = f"pids cgroup ({cg_why}) + RLIMIT_NPROC" if drop_uid else f"pids cgroup ({cg_why})"
    elif drop_uid:
        proc_detail = "RLIMIT_NPROC on a per-run uid (no pids cgroup)"
    elif nproc:
        proc_detail = "RLIMIT_NPROC counted over all of this user's processes (no pids cgroup)"
    else:
        proc_detail = "NONE (root, no pids cgroup): fork bombs are not contained"
        warn.append("fork bombs are not contained on this host")
    mech.append(Mechanism("process limit", pids_cg or nproc, proc_detail))
    mech.append(Mechanism("memory limit", True, f"RLIMIT_AS per process + memory cgroup for the tree ({cg_why})" if mem_cg else f"RLIMIT_AS per process only ({cg_why})"))
    mech.append(Mechanism("seccomp filter", use_seccomp, "no_new_privs; socket/clone-namespace/ptrace/mount/bpf/... denied" if use_seccomp else "unavailable" if config.use_seccomp else "disabled by config"))
    mech.append(Mechanism("kill on timeout", True, "pid namespace teardown" + (" + cgroup kill" if layout else "") if ns["pid"] else "cgroup kill + subreaper" if layout else "subreaper + process group (a setsid'd orphan could escape)"))
    mech.append(Mechanism("clean environment", True, f"only {sorted(config.env)}"))
    mech.append(Mechanism("output caps", True, "RLIMIT_FSIZE on stdout, stderr and every written file"))
    if layout is None and config.use_cgroups:
        warn.append(f"no cgroups: {cg_why}")

    keep = tuple(d for d in interpreter_dirs(config.python) if any(d == t or d.startswith(t + os.sep) for t in TMPFS_DIRS)) \
        if ns["mount"] else ()
    strong = (drop_uid or user_ns_child) and ns["pid"] and ns["net"] and ns["mount"] and pids_cg and mem_cg
    partial = unprivileged and (pids_cg or nproc) and (ns["net"] or use_seccomp)
    level = "strong" if strong else "partial" if partial else "minimal"
    return IsolationPlan(
        namespaces={**ns, "user": user_ns}, drop_uid=drop_uid, user_ns_child=user_ns_child,
        cgroup=layout, seccomp=use_seccomp, expose=tuple((t, tuple(d)) for t, d in expose), nproc_limit=nproc, mechanisms=tuple(mech),
        level=level, warnings=tuple(warn), keep_dirs=keep,
    )


def meets(level: str, required: str) -> bool:
    return LEVELS.index(level) <= LEVELS.index(required)

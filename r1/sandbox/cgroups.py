"""Per-run control groups: a pids limit that binds even root, a memory limit for the whole
process tree, peak memory and OOM-kill accounting, and a reliable "kill everything".

cgroup v1 (one hierarchy per controller, as on this project's CI machines) and v2 (one
unified hierarchy, as on most current distributions) are both handled. Groups are made
below the cgroup this process already lives in, so a container's or a job's own limits
keep applying (v1 memory has `use_hierarchy`, v2 is always hierarchical).
"""
from __future__ import annotations

import errno
import os
import secrets
import signal
import time
from dataclasses import dataclass

CONTROLLERS = ("pids", "memory")
PREFIX = "r1-sandbox-"


@dataclass(frozen=True)
class CgroupLayout:
    """Where per-run groups are created: controller -> parent directory."""

    version: int
    parents: dict[str, str]
    note: str = ""

    def __post_init__(self) -> None:
        if self.version not in (1, 2):
            raise ValueError(f"cgroup version must be 1 or 2, got {self.version}")
        unknown = set(self.parents) - set(CONTROLLERS)
        if unknown:
            raise ValueError(f"unsupported cgroup controllers {sorted(unknown)}; known: {CONTROLLERS}")


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount root, mount point, fstype, super options) for each cgroup mount."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if rfields and rfields[0] in ("cgroup", "cgroup2"):
                point = fields[4].encode().decode("unicode_escape")
                out.append((fields[3], point, rfields[0], set(rfields[2].split(",")) if len(rfields) > 2 else set()))
    return out


def _own_paths() -> dict[str, str]:
    """controller (or '' for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for ctrl in ctrls.split(",") if ctrls else [""]:
                paths[ctrl] = path
    return paths


def _join(point: str, mount_root: str, path: str) -> str:
    if mount_root != "/" and path.startswith(mount_root):
        path = path[len(mount_root):]
    return os.path.join(point, path.strip("/")).rstrip("/") or "/"


def _usable(parent: str) -> bool:
    """Can we make (and remove) a child group here? Only a real mkdir answers that."""
    probe = os.path.join(parent, f"{PREFIX}probe-{os.getpid()}-{secrets.token_hex(3)}")
    try:
        os.mkdir(probe)
        os.rmdir(probe)
        return True
    except OSError:
        return False


def detect() -> tuple[CgroupLayout | None, str]:
    """The usable layout, or None and the reason none is usable."""
    try:
        mounts, own = _mounts(), _own_paths()
    except OSError as e:
        return None, f"cannot read cgroup info: {e}"
    v1: dict[str, str] = {}
    for root, point, fstype, opts in mounts:
        if fstype != "cgroup":
            continue
        for ctrl in CONTROLLERS:
            if ctrl in opts and ctrl in own and ctrl not in v1:
                parent = _join(point, root, own[ctrl])
                if _usable(parent):
                    v1[ctrl] = parent
    if set(v1) == set(CONTROLLERS):
        return CgroupLayout(1, v1), "cgroup v1"
    for root, point, fstype, _ in mounts:
        if fstype != "cgroup2" or "" not in own:
            continue
        parent = _join(point, root, own[""])
        ok, why = _v2_delegated(parent)
        if ok and _usable(parent):
            return CgroupLayout(2, {c: parent for c in CONTROLLERS}), "cgroup v2"
        if v1:
            break
        return None, why
    if v1:
        return CgroupLayout(1, v1, note=f"only {sorted(v1)} available"), "cgroup v1 (partial)"
    return None, "no writable cgroup hierarchy with the pids and memory controllers"


def _v2_delegated(parent: str) -> tuple[bool, str]:
    try:
        with open(os.path.join(parent, "cgroup.subtree_control")) as f:
            enabled = set(f.read().split())
        if set(CONTROLLERS) <= enabled:
            return True, ""
        with open(os.path.join(parent, "cgroup.controllers")) as f:
            available = set(f.read().split())
        missing = set(CONTROLLERS) - available
        if missing:
            return False, f"cgroup v2: controllers {sorted(missing)} not delegated to {parent}"
        # Enabling fails with EBUSY when processes live in `parent` itself (the "no internal
        # processes" rule); systemd-run --scope -p Delegate=yes gives a delegated subtree.
        with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
            f.write(" ".join(f"+{c}" for c in CONTROLLERS))
        return True, ""
    except OSError as e:
        return False, f"cgroup v2: cannot enable {CONTROLLERS} below {parent}: {e.strerror}"


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


class RunCgroup:
    """One run's groups. Create, pass `procs_files` to the launcher, then `close()`."""

    def __init__(self, layout: CgroupLayout, max_tasks: int, memory_bytes: int) -> None:
        self.layout = layout
        name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        self.dirs: dict[str, str] = {}
        try:
            for ctrl, parent in layout.parents.items():
                path = os.path.join(parent, name)
                if path not in self.dirs.values():
                    os.mkdir(path)
                self.dirs[ctrl] = path
            if "pids" in self.dirs:
                _write(os.path.join(self.dirs["pids"], "pids.max"), str(max_tasks))
            if "memory" in self.dirs:
                self._limit_memory(self.dirs["memory"], memory_bytes)
        except OSError:
            self.close()
            raise

    def _limit_memory(self, path: str, nbytes: int) -> None:
        if self.layout.version == 1:
            _write(os.path.join(path, "memory.limit_in_bytes"), str(nbytes))
            memsw = os.path.join(path, "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):  # with swap accounting, also forbid swapping past the cap
                _write(memsw, str(nbytes))
        else:
            _write(os.path.join(path, "memory.max"), str(nbytes))
            swap = os.path.join(path, "memory.swap.max")
            if os.path.exists(swap):
                _write(swap, "0")

    @property
    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in dict.fromkeys(self.dirs.values())]

    def add(self, pid: int) -> None:
        """Move `pid` (and, v1 cgroup.procs semantics, its whole thread group) in."""
        for path in self.procs_files:
            _write(path, str(pid))

    def pids(self) -> list[int]:
        found: set[int] = set()
        for path in self.procs_files:
            text = _read(path) or ""
            found.update(int(p) for p in text.split())
        return sorted(found)

    def oom_killed(self) -> bool:
        if "memory" not in self.dirs:
            return False
        name = "memory.oom_control" if self.layout.version == 1 else "memory.events"
        text = _read(os.path.join(self.dirs["memory"], name)) or ""
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and int(value) > 0:
                return True
        return False

    def peak_memory_bytes(self) -> int | None:
        if "memory" not in self.dirs:
            return None
        name = "memory.max_usage_in_bytes" if self.layout.version == 1 else "memory.peak"
        text = _read(os.path.join(self.dirs["memory"], name))
        return int(text) if text and text.strip().isdigit() else None

    def kill_all(self, deadline_s: float = 2.0) -> bool:
        """SIGKILL every task until the groups are empty; False if they would not empty."""
        kill_file = os.path.join(next(iter(self.dirs.values()), ""), "cgroup.kill")
        end = time.monotonic() + deadline_s
        while True:
            pids = self.pids()
            if not pids:
                return True
            if self.layout.version == 2 and os.path.exists(kill_file):
                _write(kill_file, "1")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > end:
                return False
            time.sleep(0.005)

    def close(self) -> None:
        """Kill what is left and remove the groups (rmdir is EBUSY until tasks are gone)."""
        if not self.dirs:
            return
        self.kill_all()
        for path in dict.fromkeys(self.dirs.values()):
            for _ in range(200):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        raise
                    time.sleep(0.005)
        self.dirs = {}


def stale_groups(layout: CgroupLayout) -> list[str]:
    """Groups left by runs whose owning process is gone (a killed trainer, say)."""
    stale = []
    for parent in dict.fromkeys(layout.parents.values()):
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            if not name.startswith(PREFIX) or name.startswith(f"{PREFIX}probe"):
                continue
            owner = name[len(PREFIX):].split("-", 1)[0]
            if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
                stale.append(os.path.join(parent, name))
    return stale

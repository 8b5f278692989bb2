"""A seccomp-BPF filter for sandboxed programs, built by hand (no libseccomp binding needed).

This module is imported by `launcher.py` inside the child before it execs the untrusted
program, so it must depend on nothing but the standard library (the launcher runs with
`python -I -S`, i.e. without site-packages).

What the filter does (x86_64 only; elsewhere `build_filter` returns None and the caller
reports seccomp as unavailable):
  - syscalls from a foreign ABI (i386 `int 0x80`, x32) kill the process: a classic way to
    slip past a filter that only checks native syscall numbers;
  - `socket()` for any family other than AF_UNIX fails with EPERM. This is the network
    block where no network namespace can be made, and defence in depth where one can;
  - `clone()` with namespace flags, `clone3()` (its flags live in memory BPF cannot read,
    so it answers ENOSYS and libc falls back to `clone`) and a list of syscalls a test
    program has no business calling (ptrace, mount, unshare, bpf, keyctl, io_uring, ...)
    fail with EPERM, which shrinks the kernel attack surface the program can reach.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct

# BPF opcodes (linux/filter.h, linux/bpf_common.h)
_LD_W_ABS = 0x20      # BPF_LD | BPF_W | BPF_ABS: A = *(u32 *)(seccomp_data + k)
_JEQ_K = 0x15         # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35         # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45        # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06         # BPF_RET | BPF_K

_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000

# struct seccomp_data { int nr; u32 arch; u64 instruction_pointer; u64 args[6]; }
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARG0_LO = 16     # little-endian: low 32 bits of args[0]

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_AF_UNIX = 1
# CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
_CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

# x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl).
_X86_64 = {
    "socket": 41,
    "clone": 56,
    "clone3": 435,
}
_X86_64_DENIED = {
    "ptrace": 101, "syslog": 103, "personality": 135, "vhangup": 153, "pivot_root": 155,
    "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166,
    "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173,
    "init_module": 175, "delete_module": 176, "quotactl": 179, "lookup_dcookie": 212,
    "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
    "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
}


def _stmt(code: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, 0, 0, k & 0xFFFFFFFF)


def _jump(code: int, k: int, jt: int, jf: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def supported() -> bool:
    return os.uname().machine == "x86_64"


def build_filter() -> bytes | None:
    """The filter program as packed `struct sock_filter`s, or None on unsupported arches."""
    if not supported():
        return None
    eperm = _RET_ERRNO | errno.EPERM
    prog: list[bytes] = [
        _stmt(_LD_W_ABS, _OFF_ARCH),
        _jump(_JEQ_K, _AUDIT_ARCH_X86_64, 1, 0),
        _stmt(_RET_K, _RET_KILL_PROCESS),
        _stmt(_LD_W_ABS, _OFF_NR),
        _jump(_JGE_K, _X32_SYSCALL_BIT, 0, 1),
        _stmt(_RET_K, _RET_KILL_PROCESS),
    ]
    for nr in sorted(_X86_64_DENIED.values()):
        prog += [_jump(_JEQ_K, nr, 0, 1), _stmt(_RET_K, eperm)]
    prog += [_jump(_JEQ_K, _X86_64["clone3"], 0, 1), _stmt(_RET_K, _RET_ERRNO | errno.ENOSYS)]
    # socket(family, ...): only AF_UNIX (socketpair, multiprocessing) is let through.
    prog += [
        _jump(_JEQ_K, _X86_64["socket"], 0, 4),
        _stmt(_LD_W_ABS, _OFF_ARG0_LO),
        _jump(_JEQ_K, _AF_UNIX, 0, 1),
        _stmt(_RET_K, _RET_ALLOW),
        _stmt(_RET_K, eperm),
    ]
    # clone(flags, ...): threads and plain forks pass, new namespaces do not.
    prog += [
        _jump(_JEQ_K, _X86_64["clone"], 0, 3),
        _stmt(_LD_W_ABS, _OFF_ARG0_LO),
        _jump(_JSET_K, _CLONE_NS_FLAGS, 0, 1),
        _stmt(_RET_K, eperm),
        _stmt(_RET_K, _RET_ALLOW),
    ]
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(libc: ctypes.CDLL) -> None:
    """Set no_new_privs and install the filter on the calling thread (inherited across exec).

    no_new_privs is needed anyway: without it an unprivileged program could exec a setuid
    binary and regain root. Raises OSError if the kernel refuses.
    """
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {errno.errorcode.get(err, err)}")
    code = build_filter()
    if code is None:
        raise OSError(errno.ENOSYS, f"seccomp filter not available on {os.uname().machine}")
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_SECCOMP): {errno.errorcode.get(err, err)}")

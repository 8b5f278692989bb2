"""`r1 sandbox doctor` and `r1 sandbox run PROGRAM.py`."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from . import cgroups
from .limits import Limits, SandboxConfig
from .probe import SandboxUnavailable
from .runner import Sandbox

# Runs inside the sandbox and reports what it can see and do. It never writes outside its
# working dir: write access is asked with os.access, which honours read-only mounts.
_OBSERVER = r'''
import json, os, socket, sys
obs = {"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(), "cwd": os.getcwd(),
       "env": sorted(os.environ)}
try:
    socket.create_connection(("192.0.2.1", 9), timeout=1).close()  # TEST-NET-1: never routed
    obs["network"] = "connected"
except OSError as e:
    obs["network"] = "blocked: %s" % e
try:
    with open("/proc/net/dev") as f:
        obs["interfaces"] = sorted(l.split(":")[0].strip() for l in f.readlines()[2:])
except OSError as e:
    obs["interfaces"] = "unreadable: %s" % e
obs["writable"] = sorted(p for p in ["/", "/etc", "/usr", "/var", "/root", "/home", os.path.dirname(sys.executable)]
                         if os.path.isdir(p) and os.access(p, os.W_OK))
obs["workdir_writable"] = os.access(".", os.W_OK)
obs["visible_pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
with open("/proc/self/status") as f:
    st = dict(l.split(":", 1) for l in f if ":" in l)
obs["no_new_privs"] = st.get("NoNewPrivs", "").strip()
obs["seccomp"] = st.get("Seccomp", "").strip()
obs["cap_eff"] = st.get("CapEff", "").strip()
print(json.dumps(obs))
'''


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("sandbox", help="run untrusted Python programs in a sandbox; check its isolation",
                              description="Sandbox for model-written programs.")
    sub = p.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND")
    doc = sub.add_parser("doctor", help="report (and verify) the isolation this host gives")
    doc.add_argument("--json", action="store_true", help="print the report as JSON")
    doc.add_argument("--no-verify", action="store_true", help="skip running the observer program inside the sandbox")
    doc.add_argument("--clean", action="store_true", help="remove cgroups left by killed runs")
    doc.set_defaults(func=_doctor)
    run = sub.add_parser("run", help="run one program and print its verdict as JSON")
    run.add_argument("program", help="path to a Python program")
    run.add_argument("--stdin", metavar="FILE", help="file to feed on standard input")
    run.add_argument("--timeout", type=float, default=10.0, metavar="S", help="wall-clock limit in seconds (default 10)")
    run.add_argument("--cpu", type=float, default=None, metavar="S", help="CPU-time limit in seconds (default: --timeout)")
    run.add_argument("--memory-mb", type=int, default=512, metavar="N", help="memory limit in MiB (default 512)")
    run.add_argument("--max-processes", type=int, default=32, metavar="N", help="processes+threads (default 32)")
    run.add_argument("--max-output", type=int, default=4 << 20, metavar="BYTES", help="cap per output stream (default 4 MiB)")
    run.add_argument("--show", type=int, default=65536, metavar="CHARS", help="output characters to print (default 65536)")
    run.add_argument("--require", choices=("strong", "partial", "minimal"), default="minimal",
                     help="refuse to run below this isolation level (default: minimal)")
    run.set_defaults(func=_run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _run(args: argparse.Namespace) -> int:
    try:
        with open(args.program, "rb") as f:
            source = f.read()
        stdin = b""
        if args.stdin:
            with open(args.stdin, "rb") as f:
                stdin = f.read()
    except OSError as e:
        print(f"r1 sandbox run: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        limits = Limits(timeout_s=args.timeout, cpu_s=args.cpu, memory_mb=args.memory_mb,
                        max_processes=args.max_processes, max_output_bytes=args.max_output)
        sandbox = Sandbox(SandboxConfig(require=args.require))
        result = sandbox.run(source, stdin=stdin, limits=limits)
    except (ValueError, SandboxUnavailable) as e:
        print(f"r1 sandbox run: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_json(max_chars=args.show), indent=2))
    return 0


def observe(sandbox: Sandbox) -> dict:
    """Run the observer inside the sandbox; what it saw, plus pass/fail per expectation."""
    plan = sandbox.isolation
    res = sandbox.run(_OBSERVER, limits=Limits(timeout_s=20))
    if res.verdict.value != "ok":
        return {"ok": False, "error": f"{res.verdict.value}: {res.detail}", "stderr": res.stderr[-2000:]}
    seen = json.loads(res.stdout)
    host_env = set(os.environ) - set(sandbox.config.env) - {"HOME", "TMPDIR"}
    # Each check verifies a claim of the plan, so a host that cannot isolate something is
    # reported by the plan (and its warnings), and a check fails only if a claim is false.
    active = {m.name for m in plan.mechanisms if m.active}
    checks = {
        "no host environment": not (set(seen["env"]) & host_env),
        "working dir writable": seen["workdir_writable"],
        "no_new_privs": seen["no_new_privs"] == "1",
    }
    if plan.drop_uid or plan.user_ns_child:
        checks["not root"] = seen["uid"] != 0
        checks["no capabilities"] = int(seen["cap_eff"] or "0", 16) == 0
    if "network isolation" in active:
        checks["network blocked"] = seen["network"].startswith("blocked")
    if plan.namespaces["mount"]:
        checks["host filesystem read-only"] = not seen["writable"]
    if plan.namespaces["pid"]:
        checks["only its own processes visible"] = max(seen["visible_pids"]) < 10
    if plan.namespaces["net"]:
        checks["no network interface but lo"] = seen["interfaces"] in (["lo"], [])
    if plan.seccomp:
        checks["seccomp filter on"] = seen["seccomp"] == "2"
    return {"ok": all(checks.values()), "checks": checks, "observed": seen}


def _doctor(args: argparse.Namespace) -> int:
    sandbox = Sandbox()
    plan = sandbox.isolation
    report: dict = {"python": sandbox.config.python, "euid": os.geteuid(), **plan.to_json()}
    if plan.cgroup is not None:
        stale = cgroups.stale_groups(plan.cgroup)
        if args.clean:
            for path in stale:
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            stale = cgroups.stale_groups(plan.cgroup)
        report["stale_cgroups"] = stale
    if not args.no_verify:
        report["verification"] = observe(sandbox)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    verified = report.get("verification", {}).get("ok", True)
    return 0 if verified else 1


def _print_report(report: dict) -> None:
    print(f"r1 sandbox doctor  (euid {report['euid']}, python {report['python']})\n")
    width = max(len(n) for n in report["mechanisms"])
    for name, m in report["mechanisms"].items():
        print(f"  {'yes' if m['active'] else 'NO ':3}  {name:<{width}}  {m['detail']}")
    ver = report.get("verification")
    if ver is not None:
        print("\nverified by a program run inside the sandbox:")
        if "checks" in ver:
            for name, ok in ver["checks"].items():
                print(f"  {'pass' if ok else 'FAIL'}  {name}")
        else:
            print(f"  FAIL  the observer did not run: {ver['error']}")
    for w in report["warnings"]:
        print(f"\nwarning: {w}")
    if report.get("stale_cgroups"):
        print(f"\n{len(report['stale_cgroups'])} cgroups left by killed runs; `r1 sandbox doctor --clean` removes them")
    ok = ver is None or ver.get("ok", "checks" in ver and all(ver["checks"].values()))
    if ok:
        print(f"\nisolation level: {report['level'].upper()}")
    else:  # what the mechanisms promise was not what a program inside observed
        print(f"\nisolation level: {report['level'].upper()} planned, NOT VERIFIED (see FAIL above)")

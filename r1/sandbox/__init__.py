"""Run untrusted, model-written Python programs with limits and isolation.

Depends on nothing else in r1 (and nothing outside the standard library): `Sandbox.run`
for one program, `pool.run_cases` for many test cases in parallel, `r1 sandbox doctor`
for the isolation this host gives.
"""
from .limits import Limits, SandboxConfig
from .probe import IsolationPlan, SandboxUnavailable
from .result import RunResult, Verdict
from .runner import Sandbox

__all__ = ["IsolationPlan", "Limits", "RunResult", "Sandbox", "SandboxConfig", "SandboxUnavailable", "Verdict"]

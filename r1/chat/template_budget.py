"""Bounds on rendering one chat template: characters, loop iterations and time.

A chat template is code from a model file. Jinja's immutable sandbox keeps it away from Python's
internals, not from spending memory or time: `{{ 'x' * 2000000000 }}` builds a 2 GB string, and two
nested `range(100000)` loops run 10^10 times. Rendering under a `RenderBudget` stops both with a
`TemplateBudgetError` (a Jinja SecurityError, so ChatTemplate reports it naming the template):

- a string or list that `*` would make longer than `max_chars`, a `**` with a huge result, and
  output past `max_chars` (checked as the template streams it);
- more than `max_iterations` items from `range()` over the whole render;
- any value a lookup returns or a call takes longer than `max_chars` (strings grow through `~` too,
  which no hook sees);
- past `max_seconds`, checked on lookups, calls, `range()` and output chunks: a loop that does none of
  these has nothing in its body that could grow.

The spending of the render in progress is a ContextVar that `ChatTemplate` sets for the call only.
"""
from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


@dataclass(frozen=True)
class RenderBudget:
    max_chars: int = 8 * 2**20  # a prompt this long is far past any model's context already
    max_iterations: int = 1_000_000
    max_seconds: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_chars", "max_iterations", "max_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RenderBudget.{name} must be positive, got {getattr(self, name)!r}")


class TemplateBudgetError(jinja2.exceptions.SecurityError):
    pass


class Spending:
    """What one render has used of its budget."""

    def __init__(self, budget: RenderBudget) -> None:
        self.budget = budget
        self.deadline = time.monotonic() + budget.max_seconds
        self.iterations = self.chars = self._ticks = 0

    def tick(self) -> None:
        self._ticks += 1
        if self._ticks % 256 == 0 and time.monotonic() > self.deadline:
            raise TemplateBudgetError(f"rendering took over {self.budget.max_seconds:g} s")

    def iterate(self, n: int) -> None:
        self.iterations += n
        if self.iterations > self.budget.max_iterations:
            raise TemplateBudgetError(f"its loops ran over {self.budget.max_iterations} range() items")
        self.tick()

    def output(self, chunk: str) -> None:
        self.chars += len(chunk)
        if self.chars > self.budget.max_chars:
            raise TemplateBudgetError(f"it rendered over {self.budget.max_chars} characters")
        self.tick()

    def sized(self, n: int) -> None:
        if n > self.budget.max_chars:
            raise TemplateBudgetError(f"it would build a value of {n} items (the limit is {self.budget.max_chars})")


SPENDING: contextvars.ContextVar[Spending | None] = contextvars.ContextVar("r1_template_spending", default=None)


def _spending() -> Spending | None:
    return SPENDING.get()


def budgeted_range(*args: int) -> range:
    r = range(*args)
    s = _spending()
    if s is not None:
        s.iterate(len(r))
    return r


class BudgetedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox with `*`, `**`, lookups and `range` charged to the render's Spending."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        s = _spending()
        if s is not None:
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and not isinstance(n, bool):
                        s.sized(len(seq) * max(n, 0))
            elif operator == "**" and isinstance(left, (int, float)) and isinstance(right, (int, float)):
                if abs(left) > 1 and abs(right) > 4096:
                    raise TemplateBudgetError(f"{left!r} ** {right!r} is too large to compute")
        return super().call_binop(context, operator, left, right)

    # Strings can also grow through `~` (which no environment hook sees) and macro recursion: every
    # value a lookup returns and every argument of a call is measured, so a doubling loop over a
    # namespace attribute, or a macro passing itself s ~ s, stops at the first value past max_chars.
    def getattr(self, obj: Any, attribute: str) -> Any:
        return _measured(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        return _measured(super().getitem(obj, argument))

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        for a in (*args, *kwargs.values()):
            _measured(a)
        return _measured(super().call(__context, __obj, *args, **kwargs))


def _measured(value: Any) -> Any:
    s = _spending()
    if s is not None:
        s.tick()
        if isinstance(value, (str, list, tuple, dict)):
            s.sized(len(value))
    return value

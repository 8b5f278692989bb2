"""What every reward function shares: TRL's calling convention and its column handling.

A reward function is called as `fn(prompts, completions, **columns) -> list[float | None]`,
one value per completion; `None` means "does not apply to this sample" (TRL turns it into
NaN and leaves it out of the weighted sum). Completions are plain strings, or TRL's
conversational form: a list of `{"role": "assistant", "content": ...}` messages.
Columns are the dataset's other fields, one list entry per completion.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

RewardFunc = Callable[..., list[float | None]]


def completion_text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, (list, tuple)):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    raise TypeError(f"a completion must be a string or a list of chat messages, got {type(completion).__name__}")


def column(columns: dict[str, Any], name: str, n: int, default: Any = ...) -> list[Any]:
    """Column `name` as a list of length n; a missing column gives `default` per row, or an
    error naming the column when there is no default."""
    if name not in columns or columns[name] is None:
        if default is ...:
            raise KeyError(f"reward needs the dataset column {name!r} (got columns: {', '.join(sorted(columns)) or 'none'})")
        return [default] * n
    values = columns[name]
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"column {name!r} must be a list with one entry per completion")
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} entries for {n} completions")
    return list(values)


def named(fn: RewardFunc, name: str) -> RewardFunc:
    # TRL logs each reward under its function's __name__; closures made by factories would
    # all be called "reward" without this.
    fn.__name__ = name
    fn.__qualname__ = name
    return fn

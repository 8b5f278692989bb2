"""The answer as the terminal shows it: `\\boxed{83}` (how R1 marks its final answer) printed as the
number, highlighted, while the text streams in pieces that may split the command anywhere.

Only on a terminal: piped output, `--json` and the APIs keep the raw text.
"""
from __future__ import annotations

from rich.console import Console
from rich.text import Text

BOXED = "\\boxed{"
STYLE = "bold reverse"


class AnswerPrinter:
    """feed() the answer's deltas, close() at the end; holds back only what may still become a
    `\\boxed{...}` (a prefix of the command, or an open brace), so everything else streams at once."""

    def __init__(self, console: Console, highlight: bool | None = None) -> None:
        self.console = console
        self.highlight = console.is_terminal if highlight is None else highlight
        self.pending = ""

    def _print(self, text: str, style: str | None = None) -> None:
        if text:
            self.console.print(Text(text, style=style or ""), end="")

    def feed(self, text: str) -> None:
        if not self.highlight:
            self._print(text)
            return
        buf = self.pending + text
        self.pending = ""
        while buf:
            i = buf.find(BOXED)
            if i < 0:  # keep a tail that could be the start of the command
                keep = next((n for n in range(min(len(BOXED) - 1, len(buf)), 0, -1) if BOXED.startswith(buf[-n:])), 0)
                self._print(buf[:len(buf) - keep])
                self.pending = buf[len(buf) - keep:]
                return
            self._print(buf[:i])
            end = _closing(buf, i + len(BOXED) - 1)
            if end < 0:  # the brace has not closed yet
                self.pending = buf[i:]
                return
            self._print(f" {buf[i + len(BOXED):end]} ", STYLE)
            buf = buf[end + 1:]

    def close(self) -> None:
        """Print what was held back (an unclosed `\\boxed{` as it came)."""
        self._print(self.pending)
        self.pending = ""


def _closing(text: str, brace: int) -> int:
    """Index of the brace closing the one at `brace`, or -1."""
    depth = 0
    for j in range(brace, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return j
    return -1

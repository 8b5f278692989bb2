"""The terminal shows \\boxed{83} as the number highlighted, however the stream splits it."""
import io

import pytest
from rich.console import Console

from r1.commands.answer_display import AnswerPrinter

TEXT = "The answer is \\boxed{\\frac{1}{2}} and \\boxed{83}. Not boxed: \\box and \\boxed{7"


def _show(pieces, terminal=True):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal, color_system="standard" if terminal else None, width=200)
    p = AnswerPrinter(console)
    for piece in pieces:
        p.feed(piece)
    p.close()
    return buf.getvalue()


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 1000])
def test_boxed_answers_are_highlighted_whatever_the_split(step):
    out = _show([TEXT[i:i + step] for i in range(0, len(TEXT), step)])
    assert out == _show([TEXT])  # the split does not change what is shown
    plain = out.replace("\x1b[1;7m", "<").replace("\x1b[0m", ">")
    assert "The answer is < \\frac{1}{2} > and < 83 >. Not boxed: \\box and \\boxed{7" in plain


def test_piped_output_keeps_the_raw_text():
    assert _show([TEXT[:9], TEXT[9:]], terminal=False) == TEXT

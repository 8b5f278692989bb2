"""Exact parsing of numeric answers, shared by the number-valued graders.

Values are `fractions.Fraction`, so 0.5 == 1/2 == \\frac{1}{2} exactly and no float rounding
can make a wrong answer right. Only a small, closed grammar is accepted; anything else is
"no number" (the grader then says wrong), which is what keeps reward hacks out.
"""
from __future__ import annotations

import re
from fractions import Fraction

# LaTeX and typography noise that never changes a number's value.
_NOISE = [
    (re.compile(r"\\(?:,|!|;|:|quad|qquad| )"), ""),  # LaTeX spacing commands
    (re.compile(r"\\(?:left|right)\b"), ""),
    (re.compile(r"\\(?:displaystyle|textstyle)\b"), ""),
    (re.compile(r"[\u2009\u202f\u00a0]"), ""),  # thin / narrow / no-break spaces used as thousands separators
    (re.compile(r"[\u2212\u2013]"), "-"),  # unicode minus and en dash
]
_WRAPPERS = re.compile(r"^(?:\$+|\\\(|\\\[)\s*(.*?)\s*(?:\$+|\\\)|\\\])$", re.S)
_TEXT = re.compile(r"\\(?:text|mathrm|textbf|mathbf)\{([^{}]*)\}")

_INT = r"\d+"
_THOUSANDS = r"\d{1,3}(?:,\d{3})+"
_DECIMAL = rf"(?:{_THOUSANDS}|{_INT})(?:\.\d+)?|\.\d+"
_PLAIN = re.compile(rf"^([+-]?)\s*({_DECIMAL})$")
_SLASH = re.compile(r"^([+-]?)\s*(\d+)\s*/\s*(\d+)$")
_FRAC = re.compile(r"^([+-]?)\s*\\[dt]?frac\s*(?:\{\s*(-?\d+)\s*\}|(\d))\s*(?:\{\s*(-?\d+)\s*\}|(\d))$")
# A number token inside free text: thousands-separated ints, decimals, a/b, \frac{a}{b}. A sign
# counts only when not glued to a preceding word or digit, so "5-3" is two numbers, not 5 and -3;
# a comma not followed by three digits separates numbers, so "1,2" is two numbers.
_TOKEN = re.compile(
    r"\\[dt]?frac\s*\{\s*-?\d+\s*\}\s*\{\s*-?\d+\s*\}"
    rf"|(?<![\w./])-?(?:{_THOUSANDS}(?:\.\d+)?|\d+\.\d+|\d+/\d+|\d+|\.\d+)(?![\w])"
)


def clean(text: str) -> str:
    """Strip the math wrappers and spacing a model puts around an answer."""
    s = text.strip()
    for pat, rep in _NOISE:
        s = pat.sub(rep, s)
    s = _TEXT.sub(r"\1", s)
    m = _WRAPPERS.match(s)
    if m:
        s = m.group(1)
    s = s.strip().rstrip(".").strip()
    # A fully parenthesised number such as (-3).
    if s.startswith("(") and s.endswith(")") and s.count("(") == 1:
        s = s[1:-1].strip()
    return s


def parse_number(text: str) -> Fraction | None:
    """The exact value of `text` if the whole text is one number, else None."""
    s = clean(text)
    if not s:
        return None
    m = _PLAIN.match(s)
    if m:
        sign, body = m.groups()
        v = Fraction(body.replace(",", ""))
        return -v if sign == "-" else v
    m = _SLASH.match(s)
    if m:
        sign, num, den = m.groups()
        if int(den) == 0:
            return None
        v = Fraction(int(num), int(den))
        return -v if sign == "-" else v
    m = _FRAC.match(s)
    if m:
        sign = m.group(1)
        num = int(m.group(2) if m.group(2) is not None else m.group(3))
        den = int(m.group(4) if m.group(4) is not None else m.group(5))
        if den == 0:
            return None
        v = Fraction(num, den)
        return -v if sign == "-" else v
    return None


def single_number(text: str) -> Fraction | None:
    """The one number an answer gives: the whole text if it parses, else the only number
    token in a short sentence ("The answer is 1,234."). Several distinct numbers mean several
    candidates (or working shown in the answer) and give None."""
    v = parse_number(text)
    if v is not None:
        return v
    s = clean(text)
    values = {parse_number(t) for t in _TOKEN.findall(s)}
    values.discard(None)
    if len(values) != 1:
        return None
    return values.pop()


def format_number(v: Fraction) -> str:
    """Canonical text: an integer, or a reduced fraction `p/q` (never a rounded decimal)."""
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"

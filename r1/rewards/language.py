"""Language consistency: the share of target-language words in the reasoning (R1 §2.3.2, the
reward added in stage 2 because R1-Zero's reasoning mixed languages).

A word's language is judged by its script (Latin, Han, Cyrillic, ...), which is what language
mixing looks like in practice (English reasoning drifting into Chinese). Han, kana and Hangul
have no spaces between words, so each of their characters counts as one word. Digits,
punctuation and LaTeX symbols are neither target nor foreign and are not counted.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

from r1.rewards.base import RewardFunc, completion_text, named
from r1.tasks.extract import split_think

# target language -> the scripts its words are written in
LANGUAGE_SCRIPTS: dict[str, tuple[str, ...]] = {
    "en": ("LATIN",), "fr": ("LATIN",), "de": ("LATIN",), "es": ("LATIN",),
    "zh": ("CJK",), "ja": ("CJK", "HIRAGANA", "KATAKANA"), "ko": ("HANGUL",),
    "ru": ("CYRILLIC",), "el": ("GREEK",), "ar": ("ARABIC",),
}
_SPACELESS = ("CJK", "HIRAGANA", "KATAKANA")
# Unicode character names start with the script ("LATIN SMALL LETTER A", "CJK UNIFIED IDEOGRAPH-4E2D").
_SCRIPTS = ("LATIN", "CJK", "HIRAGANA", "KATAKANA", "HANGUL", "CYRILLIC", "GREEK", "ARABIC", "HEBREW", "DEVANAGARI", "THAI")
_WORD = re.compile(r"[^\W\d_]+")  # runs of letters in any script
_MATH_GREEK = set("αβγδεζηθικλμνξπρστυφχψωΔΣΠΩ")  # math symbols, not Greek prose
_LATEX = re.compile(r"\\[A-Za-z]+")  # \frac, \boxed: commands, not words


def script_of(ch: str) -> str:
    name = unicodedata.name(ch, "")
    for script in _SCRIPTS:
        if name.startswith(script):
            return script
    return "OTHER"


def _words(text: str) -> list[str]:
    out: list[str] = []
    for run in _WORD.findall(_LATEX.sub(" ", text)):
        chunk = ""
        for ch in run:
            if script_of(ch) in _SPACELESS:
                if chunk:
                    out.append(chunk)
                    chunk = ""
                out.append(ch)
            else:
                chunk += ch
        if chunk:
            out.append(chunk)
    return [w for w in out if not (len(w) == 1 and w in _MATH_GREEK)]


def language_share(text: str, language: str = "en") -> float | None:
    """Share of words in `language`'s scripts; None when the text has no words at all."""
    if language not in LANGUAGE_SCRIPTS:
        raise ValueError(f"unknown target language {language!r}; known: {', '.join(sorted(LANGUAGE_SCRIPTS))}")
    words = _words(text)
    if not words:
        return None
    scripts = LANGUAGE_SCRIPTS[language]
    return sum(1 for w in words if script_of(w[0]) in scripts) / len(words)


def reasoning_of(text: str, think_in_prompt: bool = True) -> str:
    reasoning, _ = split_think(text, think_in_prompt)
    # Thinking that never closed is still reasoning (a truncated sample); judge all of it.
    return reasoning if reasoning is not None else text


def make_language_reward(language: str = "en", think_in_prompt: bool = True) -> RewardFunc:
    if language not in LANGUAGE_SCRIPTS:
        raise ValueError(f"unknown target language {language!r}; known: {', '.join(sorted(LANGUAGE_SCRIPTS))}")

    def language_consistency_reward(prompts: list, completions: list, **columns: Any) -> list[float | None]:
        out: list[float | None] = []
        for c in completions:
            share = language_share(reasoning_of(completion_text(c), think_in_prompt), language)
            # No words at all (pure arithmetic) mixes no language: full reward.
            out.append(1.0 if share is None else share)
        return out
    return named(language_consistency_reward, "language_consistency_reward")


language_consistency_reward = make_language_reward()

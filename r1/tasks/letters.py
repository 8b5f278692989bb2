"""Letter counting: "How many times does the letter 'r' appear in 'strawberry'?"

Hard for language models because tokens hide spelling. The split key is the text, not the
question, so test words and phrases are never seen in training at all.

Difficulty d: d=1 short words, d=2 long words, d=3 two-word phrases, d=4 three- and four-word
phrases with letters that may be absent, d=5 long made-up words (no memorised spelling helps).
Counting is case-insensitive.
"""
from __future__ import annotations

import random
from fractions import Fraction

from r1.tasks.base import Problem, check_args, draw_in_split
from r1.tasks.numbers import format_number, single_number

NAME = "letters"
MATH_LIKE = True  # the answer is a count; R1's \boxed{} instruction fits
MAX_DIFFICULTY = 5

SHORT_WORDS = tuple("""
apple bread chair dance eagle flame grape house juice knife lemon mango night ocean piano queen
river snake table tiger under voice water youth zebra cloud dream earth field glass heart
light money music paper plant radio smile stone sugar train watch woman world after about
again april berry cherry coffee cookie cotton garden guitar island jacket jungle kettle ladder
letter magnet mirror monkey number orange parrot pepper pillow pocket puzzle rabbit rocket
saddle silver spoon summer sunset tennis tomato turtle violin window winter yellow butter
carrot circle dinner doctor engine finger flower forest hammer hollow kitten little marble
middle muffin narrow pretty puppet ribbon school street tassel bottle coffee accept balloon
banana bubble cabbage collect connect correct giraffe hello hippo igloo llama noodle office
""".split())

LONG_WORDS = tuple("""
strawberry raspberry blueberry mississippi committee occurrence accommodate embarrass
possession necessary millennium parallel questionnaire recommend successful tomorrow
bookkeeper assessment balloonist carrousel chimpanzee dictionary electricity encyclopedia
entrepreneur environment exaggerate fluorescent government handkerchief hippopotamus
independence intelligence kaleidoscope knowledgeable lighthouse marshmallow mathematics
mediterranean millionaire misspelling neighborhood onomatopoeia parliament pennsylvania
philosophy photography pneumonia possibility pronunciation rhythmically sarsaparilla
shakespeare sophisticated strengthen subterranean supercalifragilistic surveillance
tennessee thermometer thunderstorm transparency unnecessary vacuum cleaner wednesday
whippersnapper woodpecker xylophone yesterday accessibility barrenness commemorate
""".split())

_SYLLABLES = ("ra", "mi", "sto", "plen", "qua", "ber", "lo", "zz", "ip", "tre", "sku", "nor", "ell",
              "ass", "ko", "vy", "drap", "gle", "oon", "ess", "rr", "tha", "pp", "wix")


def _text_for(rng: random.Random, difficulty: int) -> str:
    if difficulty == 1:
        return rng.choice(SHORT_WORDS)
    if difficulty == 2:
        return rng.choice(LONG_WORDS)
    if difficulty == 3:
        return f"{rng.choice(SHORT_WORDS)} {rng.choice(LONG_WORDS)}"
    if difficulty == 4:
        return " ".join(rng.choice(SHORT_WORDS + LONG_WORDS) for _ in range(rng.randint(3, 4)))
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(5, 8)))


def _draw(difficulty: int):
    def draw(rng: random.Random):
        text = _text_for(rng, difficulty)
        present = sorted({c for c in text if c.isalpha()})
        # Mostly ask about letters that occur (repeated ones are the interesting case); from
        # d=4 one question in five asks about a letter that is absent.
        if difficulty >= 4 and rng.random() < 0.2:
            letter = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c not in present] or present)
        else:
            repeated = [c for c in present if text.count(c) > 1]
            letter = rng.choice(repeated if repeated and rng.random() < 0.6 else present)
        return text, (text, letter)
    return draw


def count_letter(text: str, letter: str) -> int:
    return text.lower().count(letter.lower())


def generate(seed: int, split: str = "train", difficulty: int = 1) -> Problem:
    check_args(NAME, seed, split, difficulty, MAX_DIFFICULTY)
    key, (text, letter) = draw_in_split(NAME, seed, split, difficulty, _draw(difficulty))
    what = "word" if " " not in text else "phrase"
    prompt = f"How many times does the letter '{letter}' appear in the {what} '{text}'?"
    return Problem(task=NAME, prompt=prompt, answer=str(count_letter(text, letter)),
                   meta={"text": text, "letter": letter, "difficulty": difficulty}, id=f"{letter}|{key}")


_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}


def _value(answer: str) -> Fraction | None:
    s = answer.strip().strip(".").strip().lower()
    if s in _WORDS:
        return Fraction(_WORDS[s])
    return single_number(answer)


def grade(answer: str, problem: Problem) -> bool:
    v = _value(answer)
    return v is not None and v == int(problem.answer)


def answer_key(answer: str, problem: Problem) -> str | None:
    v = _value(answer)
    return None if v is None else format_number(v)


def trace(problem: Problem) -> str:
    text, letter = problem.meta["text"], problem.meta["letter"]
    lines = [f"I need to count how many times '{letter}' appears in '{text}'. "
             "I'll spell it out letter by letter and keep a running count."]
    count, spelled = 0, []
    for ch in text:
        if ch == " ":
            spelled.append("(space)")
            continue
        if ch.lower() == letter.lower():
            count += 1
            spelled.append(f"{ch} ({count})")
        else:
            spelled.append(ch)
    lines.append(", ".join(spelled))
    noun = "time" if count == 1 else "times"
    lines.append(f"The letter '{letter}' appears {count} {noun}.")
    return "\n".join(lines)

"""The same problem, asked the way people type it.

Generators write one canonical sentence per family ("What is 347 + 858?"). A model trained only
on that sentence fails on "whats 347 plus 858" — so training data for a chat model mixes in
these paraphrases, and evaluation can ask in them too. A paraphrase changes `Problem.prompt`
only: answer, meta and id stay, so the family's grader is unchanged and the train/test split of
the underlying problem is kept.

Templates are data: family -> list of format strings over the fields `_fields` derives from the
problem's meta. Index 0 is always the canonical prompt.
"""
from __future__ import annotations

import dataclasses
import random

from r1.tasks.base import Problem

_OP_WORDS = {"add": ("plus", "+", "add {a} and {b}"), "sub": ("minus", "-", "subtract {b} from {a}"),
             "mul": ("times", "*", "multiply {a} by {b}")}

# {canonical} is the generator's own sentence. Casing and missing question marks are deliberate.
TEMPLATES: dict[str, list[str]] = {
    "arithmetic": [
        "{canonical}",
        "what's {a} {word} {b}?",
        "{a} {sym} {b} = ?",
        "{a}{sym}{b}",
        "Calculate {a} {sym} {b}.",
        "Can you work out {a} {word} {b}?",
        "{verb_phrase}",
        "How much is {a} {word} {b}?",
        "whats {a} {sym} {b}",
    ],
    "countdown": [
        "{canonical}",
        "Use the numbers {nums} to make {target}.",
        "Make {target} from {nums} with + - * /.",
        "Countdown: numbers {nums}, target {target}.",
        "how can I get {target} using {nums}? each number once at most",
    ],
    "equations": [
        "{canonical}",
        "Solve {equation}",
        "{equation}, what is x?",
        "Find x if {equation}.",
        "what is x in {equation}",
    ],
    "letters": [
        "{canonical}",
        "How many {letter}'s are in {text}?",
        "how many {letter}s in {text}",
        "Count the letter {letter} in \"{text}\".",
        "How many times does {letter} appear in {text}?",
    ],
    # sorting's wording depends on its kind; the canonical sentence is the safe choice for "people"
    "sorting": [
        "{canonical}",
        "{sort_request}: {items}",
        "Can you put {items} in order, {direction}?",
        "order {items} {direction}",
    ],
}


TEMPLATES["mixed_arithmetic"] = TEMPLATES["arithmetic"]


def _fields(problem: Problem) -> dict[str, str] | None:
    """The template fields of a problem, or None when only the canonical sentence fits."""
    m = problem.meta
    f = {"canonical": problem.prompt}
    if problem.task in ("arithmetic", "mixed_arithmetic"):
        word, sym, verb = _OP_WORDS[m["op"]]
        f.update(a=str(m["a"]), b=str(m["b"]), word=word, sym=sym, verb_phrase=verb.format(a=m["a"], b=m["b"]))
    elif problem.task == "countdown":
        f.update(nums=", ".join(str(n) for n in m["numbers"]), target=str(m["target"]))
    elif problem.task == "equations":
        f.update(equation=m["equation"])
    elif problem.task == "letters":
        f.update(letter=m["letter"], text=m["text"])
    elif problem.task == "sorting":
        if m.get("kind") == "numbers":
            direction = "from largest to smallest" if m.get("descending") else "from smallest to largest"
        elif m.get("kind") == "words":
            direction = "alphabetically"
        else:
            return None
        f.update(items=", ".join(m["items"]), direction=direction, sort_request=f"Sort {direction}")
    else:
        return None
    return f


def num_phrasings(task: str) -> int:
    return len(TEMPLATES.get(task, ["{canonical}"]))


def rephrase(problem: Problem, variant: int) -> Problem:
    """`problem` asked with template `variant` of its family (0 = unchanged). Variants that do not
    fit the problem (e.g. word forms of a 'people' sorting puzzle) fall back to the canonical one."""
    templates = TEMPLATES.get(problem.task)
    if not templates or variant == 0:
        return problem
    if not 0 <= variant < len(templates):
        raise ValueError(f"{problem.task} has phrasings 0..{len(templates) - 1}, asked for {variant}")
    fields = _fields(problem)
    if fields is None:
        return problem
    return dataclasses.replace(problem, prompt=templates[variant].format(**fields))


def random_phrasing(problem: Problem, rng: random.Random, p_canonical: float = 0.5) -> Problem:
    """The canonical prompt with probability p_canonical, else a uniformly drawn paraphrase."""
    n = num_phrasings(problem.task)
    if n == 1 or p_canonical >= 1 or rng.random() < p_canonical:
        return problem
    return rephrase(problem, rng.randrange(1, n))

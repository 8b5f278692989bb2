"""Non-reasoning chat turns: greetings, who-are-you, thanks, what-can-you-do, and questions the
model cannot answer.

R1's third stage mixes such data into the rejection-sampled SFT set so the model stays a usable
assistant for turns that need no reasoning (the paper reuses parts of V3's SFT data; for simple
queries it answers without a chain of thought). Here they are generated: a user line composed
from an intent's openers and bodies, an assistant reply with an empty think block.

It is also a task family, so the eval can hold the model to it: a user line is a train or test
problem by its text (held-out lines are never trained on), and a reply passes when it answers in
words -- no boxed number, no bare digits (the embedded default once replied `\\boxed{662}` to
"hello, who are you?").
"""
from __future__ import annotations

import random
import re
from typing import Any

from r1.tasks.base import Problem, check_args, draw_in_split

NAME = "chitchat"
MATH_LIKE = False
MAX_DIFFICULTY = 1
MODEL_NAME = "r1-tiny"
_SCOPE = "arithmetic: adding, subtracting and multiplying numbers, like 347 + 858 or 128 times 7"

# intent -> (openers, bodies, replies). A user line is opener + body; "" means none. Replies say
# only what the tiny model can really do.
INTENTS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "greeting": (["", "hi", "hello", "hey", "hey there", "good morning", "good evening", "yo"],
                 ["", "how are you?", "anyone there?", "how's it going?", "nice to meet you"],
                 ["Hello! Ask me an arithmetic question, like 347 + 858.",
                  "Hi! I can add, subtract and multiply numbers. What would you like to work out?"]),
    "identity": (["", "hi,", "hello,", "hey,", "so"],
                 ["who are you?", "what are you?", "what is your name?", "are you a person?",
                  "are you an AI?", "what model are you?", "who made you?"],
                 [f"I am {MODEL_NAME}, a tiny reasoning model trained with the DeepSeek-R1 recipe on a laptop CPU.",
                  f"I'm {MODEL_NAME}: a small model that thinks step by step about arithmetic before it answers."]),
    "thanks": (["", "ok", "great,", "cool", "perfect,", "nice"],
               ["thanks!", "thank you.", "thx", "thanks a lot", "that helps, thanks", "thank you so much!"],
               ["You're welcome!", "Glad I could help.", "Any time. Ask me another sum if you like."]),
    "abilities": (["", "hi,", "so", "ok,"],
                  ["what can you do?", "what kind of questions can you answer?", "help",
                   "what are you good at?", "can you help me?", "what should I ask you?"],
                  [f"I can do {_SCOPE}. Ask me one and I'll work it out step by step."]),
    "goodbye": (["", "ok", "alright,", "thanks,"],
                ["bye", "goodbye!", "see you later", "that's all for now", "good night"],
                ["Goodbye!", "Bye! Come back with more sums."]),
    "out_of_scope": (["", "hey,", "quick question:", "tell me,"],
                     ["what is the capital of France?", "write me a poem", "what's the weather today?",
                      "tell me a joke", "who won the world cup?", "translate hello into Spanish",
                      "what is the meaning of life?", "can you write some code?", "recommend a movie"],
                     [f"Sorry, I can't help with that. I'm a tiny model that only does {_SCOPE}.",
                      "That is outside what I know. I can only work out arithmetic, like 56 - 19 or 12 * 7."]),
}


def _line(rng: random.Random, intent: str) -> str:
    openers, bodies, _ = INTENTS[intent]
    opener, body = rng.choice(openers), rng.choice(bodies)
    text = f"{opener} {body}".strip() or rng.choice([b for b in bodies if b] or openers[1:])
    return text[0].upper() + text[1:] if rng.random() < 0.5 else text


def _draw(rng: random.Random) -> tuple[str, tuple[str, str]]:
    intent = rng.choice(sorted(INTENTS))
    line = _line(rng, intent)
    return line.lower(), (intent, line)  # the split key ignores case: "Hi" and "hi" are one line


def generate(seed: int, split: str = "train", difficulty: int = 1) -> Problem:
    check_args(NAME, seed, split, difficulty, MAX_DIFFICULTY)
    key, (intent, line) = draw_in_split(NAME, seed, split, difficulty, _draw)
    return Problem(task=NAME, prompt=line, answer=reply(intent, seed), meta={"intent": intent}, id=key)


def reply(intent: str, seed: int = 0) -> str:
    replies = INTENTS[intent][2]
    return replies[seed % len(replies)]


def answered_in_words(answer: str | None) -> bool:
    """At least two words with letters and no number standing as the answer."""
    if not answer:
        return False
    return len(re.findall(r"[^\W\d_]{2,}", answer)) >= 2 and not re.fullmatch(r"[\s\d.,+\-*/=()]*", answer)


def grade(answer: str, problem: Problem) -> bool:
    # extraction hands over a boxed answer's contents alone ("662"), which fails here as it should
    return answered_in_words(answer)


def answer_key(answer: str, problem: Problem) -> str | None:
    return "words" if answered_in_words(answer) else None


def trace(problem: Problem) -> str:
    return ""  # answered without reasoning


def chitchat_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` train-split chat records ({"messages": [...]}) with an empty reasoning block before the reply."""
    out = []
    for i in range(n):
        p = generate(seed * 100_003 + i, "train")
        out.append({"messages": [{"role": "user", "content": p.prompt},
                                 {"role": "assistant", "content": f"<think>\n</think>\n\n{p.answer}"}],
                    "task": NAME})
    return out

"""Non-reasoning chat examples: greetings, who-are-you, thanks, what-can-you-do.

R1's third stage mixes such data into the rejection-sampled SFT set so the model stays a usable
assistant for turns that need no reasoning (the paper reuses parts of V3's SFT data; for simple
queries it answers without a chain of thought). Here they are a small generated set: a user
line drawn from a few phrasings per intent, an assistant reply with an empty think block.
"""
from __future__ import annotations

import random
from typing import Any

NAME = "r1-tiny"

# intent -> (user phrasings, assistant replies). Replies name what the tiny model can really do.
INTENTS: dict[str, tuple[list[str], list[str]]] = {
    "greeting": (["hi", "Hello!", "hey there", "Good morning", "hello, how are you?", "Hi, anyone there?"],
                 ["Hello! Ask me an arithmetic question, an equation, a counting or sorting puzzle.",
                  "Hi! I can add, subtract and multiply, solve equations for x, count letters and sort lists."]),
    "identity": (["Who are you?", "what are you", "What is your name?", "are you a person?"],
                 [f"I am {NAME}, a tiny reasoning model trained with the DeepSeek-R1 recipe on a laptop CPU.",
                  f"I'm {NAME}: a small model that thinks step by step before it answers."]),
    "thanks": (["thanks!", "Thank you.", "thx", "great, thanks a lot"],
               ["You're welcome!", "Glad I could help."]),
    "abilities": (["What can you do?", "what kind of questions can you answer?", "help"],
                  ["I can do arithmetic (like 347 + 858), solve equations such as 3x + 4 = 19, count letters "
                   "in words, sort numbers or words, and reach a target number with given numbers."]),
    "goodbye": (["bye", "Goodbye!", "see you later"], ["Goodbye!", "Bye! Come back with more puzzles."]),
}


def chitchat_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` chat records ({"messages": [...]}) with an empty reasoning block before the reply."""
    rng = random.Random(seed)
    intents = sorted(INTENTS)
    out = []
    for i in range(n):
        users, replies = INTENTS[intents[i % len(intents)]]
        out.append({"messages": [{"role": "user", "content": rng.choice(users)},
                                 {"role": "assistant", "content": f"<think>\n\n</think>\n\n{rng.choice(replies)}"}],
                    "task": "chitchat"})
    return out

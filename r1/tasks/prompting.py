"""How a Problem becomes a prompt, and how a worked trace becomes a target completion.

R1's usage recommendations (model card): no system prompt, put every instruction in the
user turn; for math add "Please reason step by step, and put your final answer within
\\boxed{}."; force the response to start with "<think>\\n". The R1-Zero template (paper,
Table 1) is a plain-text conversation with <think>/<answer> tags.
"""
from __future__ import annotations

from r1.tasks.base import Problem

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>. User: {prompt} Assistant:"
)

STYLES = ("chat", "r1_zero")


def is_math_like(problem: Problem) -> bool:
    from r1.tasks import get_task

    if "math_like" in problem.meta:  # set by file loaders, where the family cannot know
        return bool(problem.meta["math_like"])
    try:
        return bool(getattr(get_task(problem.task), "MATH_LIKE", False))
    except KeyError:
        return False


def user_message(problem: Problem) -> str:
    """The user turn for the chat format: the question, then the math instruction if it applies
    (not when `meta["instruction"]` is False: a chat question typed as people do)."""
    if is_math_like(problem) and problem.meta.get("instruction", True):
        return f"{problem.prompt}\n{MATH_INSTRUCTION}"
    return problem.prompt


def r1_zero_prompt(problem: Problem, force_think: bool = True) -> str:
    # The template ends in "Assistant:"; forcing " <think>" makes every sample start thinking,
    # the same rule the chat format applies with "<think>\n".
    # the paper's "User: prompt. Assistant:", without doubling a question's own end mark ("?.")
    q = problem.prompt.rstrip()
    text = R1_ZERO_TEMPLATE.format(prompt=q if q.endswith((".", "?", "!")) else q + ".")
    return text + " <think>" if force_think else text


def final_answer_text(problem: Problem) -> str:
    return f"\\boxed{{{problem.answer}}}" if is_math_like(problem) else problem.answer


def sft_completion(problem: Problem, reasoning: str, style: str = "chat", think_in_prompt: bool = True) -> str:
    """A target completion for cold-start SFT: the worked reasoning, then the answer, in the
    same format the extractor reads (so an SFT'd model is graded the way it was taught)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    head = "" if think_in_prompt else "<think>\n"
    if style == "r1_zero":
        return f"{head}{reasoning.strip()}\n</think> <answer>{problem.answer}</answer>"
    if is_math_like(problem):
        return f"{head}{reasoning.strip()}\n</think>\n\nThe answer is {final_answer_text(problem)}."
    return f"{head}{reasoning.strip()}\n</think>\n\n{problem.answer}"

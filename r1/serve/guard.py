"""Prompt guard: checks that run before the model sees a prompt (and, optionally, on what it writes,
reasoning included), answering anything flagged with one standardized refusal.

Two kinds of guard, both behind the same `check(text, stage) -> Verdict`:

* `RuleGuard`: configurable policy rules, case-insensitive regular expressions grouped by category
  (a JSON/YAML file, or the small built-in policy). Cheap enough to run on every streamed delta.
* `ClassifierGuard`: any causal LM r1 can load, used the way Llama Guard is: the conversation goes
  into a safety-assessment prompt and the model's first line says `safe` or `unsafe` (the second
  names the violated categories). A Llama Guard checkpoint brings its own chat template, which
  renders that prompt itself; any other model gets the same task text as one user message.

Guards see text only; whether a verdict blocks a prompt or an output is the pipeline's business.
"""
from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

REFUSAL = "I can't help with that request."
STAGES = ("prompt", "output")


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    category: str | None = None
    guard: str = ""
    detail: str = ""


SAFE = Verdict(False)


class Guard(Protocol):
    name: str
    cheap: bool  # fast enough to run on every streamed delta

    def check(self, text: str, stage: str) -> Verdict: ...


# ------------------------------------------------------------------ rules
@dataclass
class Rule:
    category: str
    patterns: list[str]
    stages: tuple[str, ...] = STAGES
    compiled: list[re.Pattern] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.category or not isinstance(self.category, str):
            raise ValueError("a guard rule needs a category name")
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise ValueError(f"guard rule {self.category!r}: unknown stage(s) {bad}; use {list(STAGES)}")
        if not self.patterns:
            raise ValueError(f"guard rule {self.category!r} has no patterns")
        self.compiled = []
        for p in self.patterns:
            try:
                self.compiled.append(re.compile(p, re.IGNORECASE | re.DOTALL))
            except re.error as e:
                raise ValueError(f"guard rule {self.category!r}: bad regular expression {p!r}: {e}") from e


# A deliberately small default policy: requests for mass-casualty weapons, malware, sexual content
# involving minors, and self-harm methods. Real deployments bring their own rules file.
DEFAULT_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("indiscriminate_weapons", (
        r"\b(make|build|synthesi[sz]e|produce|manufacture|assemble)\b.{0,60}\b(bomb|explosive device|nerve agent|sarin|"
        r"vx gas|bioweapon|biological weapon|chemical weapon|dirty bomb|nuclear weapon)s?\b",)),
    ("malware", (r"\b(write|create|build|code)\b.{0,40}\b(ransomware|keylogger|computer virus|botnet|credential stealer)\b",)),
    ("child_sexual_exploitation", (r"\b(sexual|explicit|nude|erotic)\b.{0,40}\b(minor|child|children|underage|kid)s?\b",
                                   r"\b(minor|child|children|underage|kid)s?\b.{0,40}\b(sexual|explicit|nude|erotic)\b")),
    ("self_harm", (r"\b(how (do|can|should) i|best way to|painless way to|ways to)\b.{0,30}\b(kill myself|end my life|"
                   r"commit suicide|self[- ]harm)\b",)),
)


class RuleGuard:
    cheap = True

    def __init__(self, rules: Sequence[Rule], name: str = "rules") -> None:
        if not rules:
            raise ValueError("RuleGuard needs at least one rule")
        self.rules, self.name = list(rules), name

    @classmethod
    def default(cls) -> RuleGuard:
        return cls([Rule(c, list(p)) for c, p in DEFAULT_RULES], name="rules:default")

    @classmethod
    def from_file(cls, path: str | Path) -> RuleGuard:
        """{"rules": [{"category": "...", "patterns": ["regex", ...], "keywords": ["word", ...],
        "stages": ["prompt", "output"]}]} as JSON or YAML; keywords match as whole words."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"{path}: cannot read guard rules: {e}") from e
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as e:
            raise ValueError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'}: {e}") from e
        items = data.get("rules") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected an object with a 'rules' list")
        rules = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ValueError(f"{path}: rules[{i}] must be an object")
            pats = list(item.get("patterns") or [])
            pats += [r"\b" + re.escape(k) + r"\b" for k in item.get("keywords") or []]
            try:
                rules.append(Rule(str(item.get("category") or item.get("name") or ""), pats,
                                  tuple(item.get("stages") or STAGES)))
            except ValueError as e:
                raise ValueError(f"{path}: rules[{i}]: {e}") from e
        return cls(rules, name=f"rules:{path.name}")

    def check(self, text: str, stage: str) -> Verdict:
        for rule in self.rules:
            if stage not in rule.stages:
                continue
            for rx in rule.compiled:
                if rx.search(text):
                    return Verdict(True, rule.category, self.name, f"matched {rx.pattern[:60]!r}")
        return SAFE


# ------------------------------------------------------------------ classifier
# Llama Guard 3's hazard taxonomy (MLCommons): what the assessment prompt lists.
LLAMA_GUARD_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("S1", "Violent Crimes."), ("S2", "Non-Violent Crimes."), ("S3", "Sex Crimes."),
    ("S4", "Child Exploitation."), ("S5", "Defamation."), ("S6", "Specialized Advice."), ("S7", "Privacy."),
    ("S8", "Intellectual Property."), ("S9", "Indiscriminate Weapons."), ("S10", "Hate."),
    ("S11", "Self-Harm."), ("S12", "Sexual Content."), ("S13", "Elections."), ("S14", "Code Interpreter Abuse."),
)


def assessment_prompt(text: str, stage: str, categories: Sequence[tuple[str, str]] = LLAMA_GUARD_CATEGORIES) -> str:
    role = "User" if stage == "prompt" else "Agent"
    cats = "\n".join(f"{code}: {desc}" for code, desc in categories)
    return (f"Task: Check if there is unsafe content in '{role}' messages in conversations according our safety "
            f"policy with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n{cats}\n"
            f"<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n{role}: {text}\n\n<END CONVERSATION>\n\n"
            f"Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n"
            " - First line must read 'safe' or 'unsafe'.\n"
            " - If unsafe, a second line must include a comma-separated list of violated categories.")


def parse_assessment(output: str) -> tuple[bool, str | None]:
    """Llama Guard's answer format: 'safe', or 'unsafe' then a line of categories. Anything else
    counts as safe (the classifier did not say unsafe), as Llama Guard's own reference code does."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    if not lines or not lines[0].lower().startswith("unsafe"):
        return False, None
    cats = lines[1] if len(lines) > 1 else None
    return True, cats


class ClassifierGuard:
    """A causal LM as a Llama-Guard-style classifier, decoding greedily a few tokens."""
    cheap = False

    def __init__(self, model, tokenizer, name: str = "classifier", max_new_tokens: int = 12,
                 categories: Sequence[tuple[str, str]] = LLAMA_GUARD_CATEGORIES, max_input_tokens: int = 2048) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_new_tokens, self.categories, self.max_input_tokens = max_new_tokens, categories, max_input_tokens
        self._lock = threading.Lock()  # one forward at a time: the model is shared by every request
        src = tokenizer.chat_template or ""
        self.native = "unsafe content categories" in src.lower()  # a Llama Guard template renders the task itself
        self.last_output = ""

    @classmethod
    def load(cls, path: str | Path, dtype=None) -> ClassifierGuard:
        import torch

        import r1

        path = Path(path)
        return cls(r1.load_model(path, dtype=dtype or torch.float32), r1.load_tokenizer(path), name=f"classifier:{path.name}")

    def _prompt_ids(self, text: str, stage: str) -> list[int]:
        tok = self.tokenizer
        if self.native:
            role = "user" if stage == "prompt" else "assistant"
            msgs = [{"role": "user", "content": "(conversation)"}, {"role": role, "content": text}] \
                if role == "assistant" else [{"role": "user", "content": text}]
            prompt = tok.apply_chat_template(msgs, add_generation_prompt=True)
        elif tok.chat_template:
            prompt = tok.apply_chat_template([{"role": "user", "content": assessment_prompt(text, stage, self.categories)}],
                                             add_generation_prompt=True)
        else:
            prompt = assessment_prompt(text, stage, self.categories) + "\n\nAssessment: "
        ids = tok.encode(prompt, add_special_tokens=not tok.chat_template)
        limit = min(self.max_input_tokens, self.model.config.max_position_embeddings - self.max_new_tokens)
        return ids[-limit:]  # the instruction is at the end: keep it when the text is long

    def check(self, text: str, stage: str) -> Verdict:
        from r1.engine.generate import generate
        from r1.engine.sampling import SamplingParams

        ids = self._prompt_ids(text, stage)
        with self._lock:
            (c,) = generate(self.model, [ids], SamplingParams(temperature=0, max_tokens=self.max_new_tokens),
                            tokenizer=self.tokenizer)
        self.last_output = c.text
        flagged, cats = parse_assessment(c.text)
        return Verdict(flagged, cats, self.name, c.text.strip()[:80]) if flagged else SAFE


# ------------------------------------------------------------------ pipeline
class GuardPipeline:
    """The guards of one server. Prompts are always checked; outputs (reasoning and answer) only
    with check_output. Expensive guards run in a worker thread so the event loop keeps serving."""

    def __init__(self, guards: Sequence[Guard], check_output: bool = False, output_every_chars: int = 400) -> None:
        if not guards:
            raise ValueError("GuardPipeline needs at least one guard")
        self.guards, self.check_output, self.output_every = list(guards), check_output, output_every_chars

    def describe(self) -> str:
        return ", ".join(g.name for g in self.guards) + (" (+output)" if self.check_output else "")

    def _run(self, text: str, stage: str, cheap_only: bool = False) -> Verdict:
        for g in self.guards:
            if cheap_only and not g.cheap:
                continue
            v = g.check(text, stage)
            if v.flagged:
                return v
        return SAFE

    async def check(self, text: str, stage: str, cheap_only: bool = False) -> Verdict:
        if all(g.cheap for g in self.guards) or cheap_only:
            return self._run(text, stage, cheap_only)
        return await asyncio.to_thread(self._run, text, stage, cheap_only)

    def output_checker(self) -> OutputChecker | None:
        return OutputChecker(self) if self.check_output else None


class OutputChecker:
    """Checks one completion's text while it streams: cheap guards on every delta (over a window
    that spans the delta boundary), expensive ones every `output_every` characters and at the end."""

    WINDOW = 512

    def __init__(self, pipeline: GuardPipeline) -> None:
        self.p = pipeline
        self.text = ""
        self._checked_at = 0

    async def feed(self, delta: str) -> Verdict:
        if not delta:
            return SAFE
        start = max(0, len(self.text) - self.WINDOW)
        self.text += delta
        v = await self.p.check(self.text[start:], "output", cheap_only=True)
        if v.flagged:
            return v
        if len(self.text) - self._checked_at >= self.p.output_every and not all(g.cheap for g in self.p.guards):
            self._checked_at = len(self.text)
            return await self.p.check(self.text, "output")
        return SAFE

    async def finish(self) -> Verdict:
        return await self.p.check(self.text, "output") if self.text else SAFE


def build_guard(specs: Sequence[str], check_output: bool = False) -> GuardPipeline | None:
    """`--guard` values: "rules" (the built-in policy), a .json/.yaml rules file, or a model path
    (folder or .gguf) to use as a classifier."""
    guards: list[Guard] = []
    for spec in specs:
        if spec in ("rules", "default"):
            guards.append(RuleGuard.default())
            continue
        p = Path(spec).expanduser()
        if not p.exists():
            raise ValueError(f"--guard {spec!r}: not 'rules', a rules file or a model path")
        if p.suffix.lower() in (".json", ".yaml", ".yml"):
            guards.append(RuleGuard.from_file(p))
        else:
            guards.append(ClassifierGuard.load(p))
    return GuardPipeline(guards, check_output) if guards else None

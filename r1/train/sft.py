"""`r1 train sft`: supervised fine-tuning on chats, loss on the assistant's tokens only (R1's
cold start, and distillation from a teacher's traces).

Data: JSONL files of `{"messages": [...]}` (OpenAI-style roles), or TRL's prompt/completion
records (`prompt` a string or a list of messages, `completion` a string or one assistant
message), or, with no files, `r1.tasks.datasets.sft_records` for the configured task families.

How an example becomes tokens and a mask: the context (every message before the trained
assistant turn) is rendered with the model's chat template and the generation prompt -- exactly
the text the model is given at inference -- and the assistant's content (reasoning included),
then EOS, is the target. R1's generation prompt already opens `<think>\\n`, so a target that
starts with it drops its copy. Prompt and target are tokenized separately, as at inference,
where the prompt is encoded alone and the model produces the rest. Examples are bucketed by
length (not packed: the model has no block-diagonal attention, and packing without it would let
examples attend to each other).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1.chat.r1_template import THINK_OPEN
from r1.chat.reasoning import close_reasoning, prompt_opens_reasoning
from r1.train.config import DistConfig, ModelSpec, OptimConfig, RunConfig, TrainConfigError
from r1.train.data import DataError
from r1.train.fp8 import Fp8Config
from r1.train.losses import LossConfig

DESCRIPTION = "supervised fine-tuning on chats (loss on assistant tokens only)"
STYLES = ("chat", "r1_zero")


@dataclass
class SFTDataConfig:
    files: list[str] = field(default_factory=list)  # JSONL files; empty = generated task records
    tasks: list[str] = field(default_factory=lambda: ["arithmetic"])
    n_per_task: int = 500
    data_seed: int = 0
    difficulty: int = 1
    style: str = "chat"  # chat: the chat template; r1_zero: prompt/completion as plain text
    assistant_turns: str = "last"  # last: train on the final assistant turn; all: one example per assistant turn
    max_len: int = 1024  # longer examples are dropped (truncating would cut the EOS the model must learn)
    batch_size: int = 8  # examples per micro-batch per rank
    grad_accum: int = 1
    eval_fraction: float = 0.02
    bucket: bool = True  # length-bucketed batches (less padding)
    tokenizer: str | None = None  # default: the tokenizer in model.init_from
    max_records: int = 0  # use only the first N records (0 = all)

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise TrainConfigError(f"data.style={self.style!r}: choose one of {STYLES}")
        if self.assistant_turns not in ("last", "all"):
            raise TrainConfigError(f"data.assistant_turns={self.assistant_turns!r}: choose last or all")
        for name in ("max_len", "batch_size", "grad_accum", "n_per_task"):
            if getattr(self, name) < 1:
                raise TrainConfigError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.eval_fraction < 1:
            raise TrainConfigError(f"data.eval_fraction must be in [0, 1), got {self.eval_fraction}")


def _sft_optim() -> OptimConfig:
    return OptimConfig(lr=2e-4, warmup_steps=5, weight_decay=0.0)


def _sft_loss() -> LossConfig:
    # MTP keeps training so speculative decoding stays useful after fine-tuning, at V3's late weight.
    return LossConfig(mtp_weight=0.1)


@dataclass
class SFTConfig:
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/sft"))
    model: ModelSpec = field(default_factory=ModelSpec)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    optim: OptimConfig = field(default_factory=_sft_optim)
    loss: LossConfig = field(default_factory=_sft_loss)
    fp8: Fp8Config = field(default_factory=Fp8Config)
    dist: DistConfig = field(default_factory=DistConfig)


CONFIG = SFTConfig


# ---------------------------------------------------------------- rendering with masks
def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise DataError(f"message content must be a string or a list of parts, got {type(content).__name__}")


def record_to_messages(rec: dict, style: str = "chat") -> list[dict] | tuple[str, str]:
    """A record as chat messages, or (prompt, completion) plain text for style r1_zero."""
    if "messages" in rec:
        msgs = rec["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) and "role" in m for m in msgs):
            raise DataError("'messages' must be a list of {role, content} objects")
        return msgs
    if "prompt" in rec and "completion" in rec:
        prompt, completion = rec["prompt"], rec["completion"]
        if isinstance(completion, list):  # TRL conversational: [{"role": "assistant", ...}]
            completion = _text(completion[-1].get("content")) if completion else ""
        elif isinstance(completion, dict):
            completion = _text(completion.get("content"))
        if isinstance(prompt, list):
            return [*prompt, {"role": "assistant", "content": completion}]
        if style == "r1_zero":
            return str(prompt), str(completion)
        return [{"role": "user", "content": str(prompt)}, {"role": "assistant", "content": completion}]
    raise DataError(f"an SFT record needs 'messages' or 'prompt' + 'completion' (got keys {', '.join(rec)})")


def _target_text(prompt: str, content: str) -> str:
    # R1's generation prompt ends in "<think>\n": a target that opens its own think block would
    # teach the model to write a second one.
    if prompt.endswith(THINK_OPEN + "\n") and content.startswith(THINK_OPEN):
        content = content[len(THINK_OPEN):]
        content = content[1:] if content.startswith("\n") else content
    return content


def render_example(tokenizer, rec: dict, style: str = "chat", assistant_turns: str = "last"
                   ) -> list[tuple[list[int], list[int]]]:
    """One record -> [(ids, mask)], mask 1 on the tokens the model must learn to produce
    (the assistant's content and the EOS that ends it), 0 on the context."""
    eos = tokenizer.eos_token
    if eos is None:
        raise DataError(f"{tokenizer.origin}: has no eos_token; SFT targets must end in one")
    conv = record_to_messages(rec, style)
    pairs: list[tuple[str, str]] = []
    if isinstance(conv, tuple):
        pairs.append((conv[0], conv[1]))
    else:
        turns = [i for i, m in enumerate(conv) if m["role"] == "assistant"]
        if not turns:
            raise DataError("a chat example needs at least one assistant message to learn from")
        for i in (turns if assistant_turns == "all" else turns[-1:]):
            if conv[i].get("tool_calls"):
                raise DataError("assistant turns with tool_calls are not supported as SFT targets; "
                                "put the call text in the content or drop the record")
            prompt = tokenizer.apply_chat_template(conv[:i], add_generation_prompt=True)
            if rec.get("thinking") is False and prompt_opens_reasoning(prompt):
                prompt = close_reasoning(prompt)  # the no-thinking mode, rendered as the server renders it
            pairs.append((prompt, _target_text(prompt, _text(conv[i].get("content")))))
    out = []
    for prompt, target in pairs:
        p_ids = tokenizer.encode(prompt)
        t_ids = tokenizer.encode(target) + [tokenizer.eos_token_id]
        out.append((p_ids + t_ids, [0] * len(p_ids) + [1] * len(t_ids)))
    return out


def load_records(cfg: SFTDataConfig) -> list[dict]:
    from r1.tasks.datasets import sft_records
    from r1.train.data import read_jsonl

    if cfg.files:
        recs = itertools.chain.from_iterable(read_jsonl(f) for f in cfg.files)
    else:
        recs = itertools.chain.from_iterable(
            sft_records(t, cfg.n_per_task, seed=cfg.data_seed, difficulty=cfg.difficulty, style=cfg.style)
            for t in cfg.tasks)
    recs = list(itertools.islice(recs, cfg.max_records) if cfg.max_records else recs)
    if not recs:
        raise DataError("no SFT records (check data.files / data.tasks)")
    return recs


def build_dataset(cfg: SFTDataConfig, tokenizer):
    """Records -> ExampleDataset; returns (dataset, number of examples dropped for length)."""
    from r1.train.data import ExampleDataset

    examples, dropped = [], 0
    for i, rec in enumerate(load_records(cfg)):
        try:
            rendered = render_example(tokenizer, rec, cfg.style, cfg.assistant_turns)
        except DataError as e:
            raise DataError(f"SFT record {i}: {e}") from None
        for ids, mask in rendered:
            if len(ids) > cfg.max_len:
                dropped += 1
            else:
                examples.append((ids, mask))
    if not examples:
        raise DataError(f"every SFT example is longer than data.max_len={cfg.max_len} tokens; raise it")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return ExampleDataset(examples, pad), dropped


def train(cfg: SFTConfig) -> list[dict]:
    import r1
    from r1.train.dist import cleanup, init_distributed
    from r1.train.loop import LoopSpec, Trainer, build_train_model, seeded
    from r1.train.tokenizer_train import tokenizer_files, tokenizer_files_from_dir

    src = cfg.data.tokenizer or cfg.model.init_from
    if not src:
        raise TrainConfigError("sft needs a tokenizer: set model.init_from (a model folder with its tokenizer) "
                               "or data.tokenizer")
    dist = init_distributed(cfg.run.device, cfg.dist.backend)
    try:
        with seeded(cfg.run.seed + dist.rank, cfg.run.deterministic):
            tok = r1.load_tokenizer(src)
            data, dropped = build_dataset(cfg.data, tok)
            if dropped and dist.is_main:
                print(f"sft: dropped {dropped} examples longer than data.max_len={cfg.data.max_len} tokens")
            train_set, eval_set = data.split(cfg.data.eval_fraction)
            model = build_train_model(cfg.model, tok, cfg.run.seed, dist.device)
            files = (tokenizer_files_from_dir(src) if (Path(src) / "tokenizer.json").is_file() else tokenizer_files(tok))
            spec = LoopSpec(train_set, eval_set, cfg.data.batch_size, cfg.data.grad_accum, bucket=cfg.data.bucket,
                            model_files=files, description="sft")
            return Trainer(cfg, model, spec, dist).fit()
    finally:
        cleanup(dist)

"""`r1 train pretrain`: next-token + MTP pretraining of a DeepSeek-V3-architecture model (or a
dense one), with auxiliary-loss-free expert balancing and optional FP8 mixed precision.

Data: text files (.txt, .jsonl with a `text` field) or, when none are given, the generated task
corpus of `r1.tasks.datasets.pretraining_text` (question, worked reasoning, answer). Tokenizer:
`data.tokenizer` (a folder), or a byte-level BPE trained on the corpus and saved in RUN/tokenizer
(reused on resume, so a resumed run tokenizes identically).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from r1.train.config import DistConfig, ModelSpec, OptimConfig, RunConfig, TrainConfigError
from r1.train.fp8 import Fp8Config
from r1.train.losses import LossConfig

DESCRIPTION = "pretrain a model: next-token + MTP loss, expert balancing, optional FP8"


@dataclass
class PretrainDataConfig:
    texts: list[str] = field(default_factory=list)  # .txt / .jsonl files; empty = generated task corpus
    tasks: list[str] = field(default_factory=lambda: ["arithmetic", "countdown", "equations", "letters", "sorting"])
    n_per_task: int = 2000
    data_seed: int = 0  # seed of the generated corpus (the batch order follows run.seed)
    difficulties: list[int] = field(default_factory=lambda: [1, 2, 3])
    seq_len: int = 128
    batch_size: int = 8  # sequences per micro-batch per rank
    grad_accum: int = 1
    eval_fraction: float = 0.02  # windows held out for eval_loss (taken from the end of the corpus)
    tokenizer: str | None = None  # folder with tokenizer.json; None = train a BPE on the corpus
    vocab_size: int = 512  # BPE vocabulary when training one
    max_texts: int = 0  # use only the first N documents (0 = all)
    # Generated corpus style: "solutions" = question, worked solution, answer as running text;
    # "r1_zero_base" = R1-Zero transcripts, worked_share of them reasoned, the rest answered
    # directly (r1.tasks.datasets.base_corpus): a base that can reason but mostly does not.
    corpus: str = "solutions"
    worked_share: float = 0.35

    def __post_init__(self) -> None:
        for name in ("seq_len", "batch_size", "grad_accum", "vocab_size"):
            if getattr(self, name) < 1:
                raise TrainConfigError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.eval_fraction < 1:
            raise TrainConfigError(f"data.eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.corpus not in ("solutions", "r1_zero_base"):
            raise TrainConfigError(f"data.corpus={self.corpus!r}: choose solutions or r1_zero_base")
        if not 0 <= self.worked_share <= 1:
            raise TrainConfigError(f"data.worked_share must be in [0, 1], got {self.worked_share}")
        if not self.texts and not self.tasks:
            raise TrainConfigError("data: give text files in data.texts or task families in data.tasks")


@dataclass
class PretrainConfig:
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/pretrain"))
    model: ModelSpec = field(default_factory=ModelSpec)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    fp8: Fp8Config = field(default_factory=Fp8Config)
    dist: DistConfig = field(default_factory=DistConfig)


CONFIG = PretrainConfig


def corpus(cfg: PretrainDataConfig):
    from r1.tasks.datasets import base_corpus, pretraining_text
    from r1.train.data import read_texts

    if cfg.texts:
        texts = read_texts(cfg.texts)
    elif cfg.corpus == "r1_zero_base":
        texts = base_corpus(cfg.tasks, cfg.n_per_task, seed=cfg.data_seed, difficulties=tuple(cfg.difficulties),
                            worked_share=cfg.worked_share)
    else:
        texts = pretraining_text(cfg.tasks, cfg.n_per_task, seed=cfg.data_seed, difficulties=tuple(cfg.difficulties))
    return itertools.islice(texts, cfg.max_texts) if cfg.max_texts else texts


def get_tokenizer(cfg: PretrainConfig, is_main: bool, dist):
    """The configured tokenizer, or the run's own BPE (trained once by rank 0, then read by all)."""
    import r1
    from r1.train.dist import barrier
    from r1.train.tokenizer_train import save_tokenizer, train_bpe

    if cfg.data.tokenizer:
        return r1.load_tokenizer(cfg.data.tokenizer)
    if cfg.model.init_from and (Path(cfg.model.init_from) / "tokenizer.json").is_file():
        return r1.load_tokenizer(cfg.model.init_from)
    folder = Path(cfg.run.out_dir) / "tokenizer"
    if is_main and not (folder / "tokenizer.json").is_file():
        save_tokenizer(train_bpe(corpus(cfg.data), cfg.data.vocab_size), folder)
    barrier(dist)
    return r1.load_tokenizer(folder)


def train(cfg: PretrainConfig) -> list[dict]:
    """Run pretraining; returns the logged metrics (rank 0 writes RUN/metrics.jsonl, RUN/model)."""
    from r1.train.data import pack_texts
    from r1.train.dist import cleanup, init_distributed
    from r1.train.loop import LoopSpec, Trainer, build_train_model, seeded
    from r1.train.tokenizer_train import tokenizer_files, tokenizer_files_from_dir

    dist = init_distributed(cfg.run.device, cfg.dist.backend)
    try:
        with seeded(cfg.run.seed + dist.rank, cfg.run.deterministic):
            tok = get_tokenizer(cfg, dist.is_main, dist)
            data = pack_texts(corpus(cfg.data), tok, cfg.data.seq_len)
            train_set, eval_set = data.split(cfg.data.eval_fraction)
            model = build_train_model(cfg.model, tok, cfg.run.seed, dist.device)
            src = cfg.data.tokenizer or cfg.model.init_from
            files = (tokenizer_files_from_dir(src) if src and (Path(src) / "tokenizer.json").is_file()
                     else tokenizer_files(tok))
            spec = LoopSpec(train_set, eval_set, cfg.data.batch_size, cfg.data.grad_accum, model_files=files,
                            description="pretrain")
            return Trainer(cfg, model, spec, dist).fit()
    finally:
        cleanup(dist)

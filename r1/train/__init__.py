"""Training: pretraining (next-token + MTP, expert balancing, FP8), SFT, GRPO, and the shared
run machinery (configs, checkpoints, metrics, torch.distributed).

Shared pieces other trainers build on:
  config.py      dataclass configs loaded from YAML recipes with KEY=VALUE overrides
  checkpoint.py  atomic checkpoints (model as HF safetensors + optimizer/scheduler/RNG/data state)
  logging.py     metrics JSONL (resume-safe) and a rich progress display
  dist.py        torch.distributed setup (torchrun env), DDP / FSDP2 wrapping, reductions
Dependencies: model, formats, chat, engine, tasks, rewards -- never serve.
"""

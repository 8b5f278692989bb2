"""Checkpoint name maps, as data.

Our module tree mirrors the HF layout, so most names map to themselves. What differs:
  * DeepSeek-V3 stores its MTP module(s) as extra decoder layers `model.layers.{L+k}` (L =
    num_hidden_layers), each with its own copy of the embedding and output head; we keep them
    under `mtp.{k}` and share embedding and head with the main model.
  * Tied embeddings have no `lm_head.weight` on disk.
"""
from __future__ import annotations

import re

from r1.config import ModelConfig

# Parts of an MTP layer as the hub checkpoint names them (after `model.layers.{L+k}.`).
MTP_OWN = ("enorm.", "hnorm.", "eh_proj.", "shared_head.norm.", "self_attn.", "mlp.",
           "input_layernorm.", "post_attention_layernorm.")
# Copies of the shared embedding/head that the hub checkpoint carries in every MTP layer.
MTP_SHARED_COPIES = {"embed_tokens.weight": "model.embed_tokens.weight",
                     "shared_head.head.weight": "lm_head.weight"}

_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.*)$")


def hub_to_ours(name: str, cfg: ModelConfig) -> str | None:
    """Map a hub tensor name to our parameter name; None = a redundant copy to skip."""
    m = _LAYER.match(name)
    if m and int(m.group(1)) >= cfg.num_hidden_layers:
        k, rest = int(m.group(1)) - cfg.num_hidden_layers, m.group(2)
        if rest in MTP_SHARED_COPIES:
            return None
        if rest.startswith(MTP_OWN):
            return f"mtp.{k}.{rest}"
    return name


def ours_to_hub(name: str, cfg: ModelConfig) -> str:
    if name.startswith("mtp."):
        k, rest = name[4:].split(".", 1)
        return f"model.layers.{cfg.num_hidden_layers + int(k)}.{rest}"
    return name


def mtp_copies(cfg: ModelConfig) -> dict[str, str]:
    """hub name of each MTP layer's embedding/head copy -> our (shared) parameter it copies."""
    return {f"model.layers.{cfg.num_hidden_layers + k}.{rest}": ours
            for k in range(cfg.num_nextn_predict_layers) for rest, ours in MTP_SHARED_COPIES.items()}

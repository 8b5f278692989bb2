"""`load_model(path)`: a safetensors folder or a .gguf file -> a ready CausalLM.

The model is built on the meta device (no memory, no init cost), materialized empty, then
every parameter is filled from the checkpoint with its shape asserted; anything missing or
unexpected is an error -- never a silently half-loaded model.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from r1.config import ModelConfig
from r1.errors import bad_file
from r1.formats.names import hub_to_ours
from r1.formats.safetensors_io import FormatError, iter_safetensors, tensor_names
from r1.model import CausalLM, build_model
from r1.model.layers import rope_frequencies

# Tensors a checkpoint may lack: older (V2-style) checkpoints have no balancing bias.
OPTIONAL_SUFFIXES = ("e_score_correction_bias",)


def empty_model(cfg: ModelConfig, dtype: torch.dtype, device: str | torch.device) -> CausalLM:
    return materialize(build_model(cfg, device="meta"), dtype, device)


def materialize(model: CausalLM, dtype: torch.dtype, device: str | torch.device) -> CausalLM:
    """A model built on the meta device, given uninitialized storage (the loader fills it) and its
    derived buffers; modules already swapped for real ones (quantized layers) keep theirs."""
    cfg = model.config
    model.to_empty(device=device)
    model.to(dtype)
    if cfg.tie_word_embeddings and isinstance(model.lm_head, nn.Linear) and hasattr(model.model.embed_tokens, "weight"):
        # to_empty replaces meta parameters one by one, which unties them
        model.lm_head.weight = model.model.embed_tokens.weight
    with torch.no_grad():  # non-persistent buffers are not in checkpoints: recompute them
        model.rotary.inv_freq.copy_(rope_frequencies(cfg)[0])
        for name, buf in model.named_buffers():
            if name.endswith("e_score_correction_bias") or name.endswith("last_expert_load"):
                buf.zero_()
    return model


def load_tensors(model: CausalLM, items: Iterable[tuple[str, torch.Tensor]], source: str) -> None:
    cfg = model.config
    targets = model.state_dict(keep_vars=True)
    loaded: set[str] = set()
    own_head = None
    with torch.no_grad():
        for hub_name, t in items:
            name = hub_to_ours(hub_name, cfg)
            if name is None:
                continue
            if cfg.tie_word_embeddings and name == "lm_head.weight" and "model.embed_tokens.weight" in targets:
                own_head = (hub_name, t)  # some exports write the tied copy too: checked against the embedding below
                continue
            if name not in targets:
                raise FormatError(f"{source}: unexpected tensor {hub_name!r}: not part of a {cfg.arch} model "
                                  f"with this config (check num_hidden_layers, experts, MTP layers, tied embeddings)")
            p = targets[name]
            if tuple(t.shape) != tuple(p.shape):
                raise FormatError(f"{source}: tensor {hub_name!r} has shape {tuple(t.shape)}, "
                                  f"but the config implies {tuple(p.shape)}")
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise FormatError(f"{source}: tensor {hub_name!r} contains NaN or Inf")
            p.copy_(t)
            loaded.add(name)
    if own_head is not None and not torch.equal(own_head[1].to(targets["model.embed_tokens.weight"].dtype),
                                                targets["model.embed_tokens.weight"]):
        raise FormatError(f"{source}: the config ties the output head to the embedding (tie_word_embeddings: "
                          f"true), yet the checkpoint has its own, different {own_head[0]!r}; set "
                          "tie_word_embeddings to false to use it")
    missing = [n for n in targets if n not in loaded and not n.endswith(OPTIONAL_SUFFIXES)
               and not (cfg.tie_word_embeddings and n == "lm_head.weight")]
    if missing:
        raise FormatError(f"{source}: {len(missing)} tensors missing, e.g. {missing[:4]}")


def load_model(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> CausalLM:
    """Load a HF safetensors folder (incl. DeepSeek FP8) or a GGUF file into a CausalLM (eval mode)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file or folder")
    with bad_file(path):
        return _load_model(path, dtype, device)


def _load_model(path: Path, dtype: torch.dtype, device: str | torch.device) -> CausalLM:
    if path.is_file() and path.suffix == ".gguf":
        from r1.formats.gguf_io import load_gguf

        cfg, tensors = load_gguf(path, dtype=dtype)
        model = empty_model(cfg, dtype, device)
        load_tensors(model, tensors.items(), str(path))
    elif path.is_dir():
        cfg = ModelConfig.load(path)
        if cfg.num_nextn_predict_layers and not any(
                (hub_to_ours(n, cfg) or "").startswith("mtp.") for n in tensor_names(path)):
            # transformers-written DeepSeek checkpoints keep the config key but drop MTP weights
            warnings.warn(f"{path}: config has {cfg.num_nextn_predict_layers} MTP layer(s) but the checkpoint "
                          "has no MTP weights; loading without MTP (no speculative decoding)")
            cfg = cfg.replace(num_nextn_predict_layers=0)
        model = empty_model(cfg, dtype, device)
        load_tensors(model, iter_safetensors(path, dtype), str(path))
    else:
        raise FormatError(f"{path}: expected a folder with config.json + *.safetensors, or a .gguf file")
    return model.eval()

"""Quantized checkpoints: HF-style folders (config.json + safetensors) whose linear layers are stored quantized.

config.json carries a `quantization_config`. Which layers are quantized, and how, is read from the tensors
themselves (a layer's tensor names say its scheme), so one file may mix schemes (a GGUF-derived int4 model
with a Q8_0 layer re-quantized to int8):

  fp8   DeepSeek-V3's exact release layout, which `r1.load_model`, transformers and vLLM read:
          <layer>.weight            float8_e4m3fn (N, K)
          <layer>.weight_scale_inv  float32 (ceil(N/128), ceil(K/128)), W = weight * scale per 128x128 tile
        quantization_config = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                               "weight_block_size": [128, 128]}
  int4  <layer>.qweight  uint8 (N, K/2), byte j of a row = q[2j] << 4 | q[2j+1], codes q in 0..15
        <layer>.scales   (N, K/G) float, <layer>.zeros (N, K/G) float: W = (q - 8) * scale + zero per group
        or, when both fit float16 exactly (a GGUF Q4_0/Q4_1 source: its d and m are float16),
        <layer>.scales float16 and <layer>.mins (N, K/G) float16: W = q * scale + min, the same weights
        (zero = min + 8 * scale, computed in float32 at load) in half the bytes
  int8  <layer>.qweight  int8 (N, K), <layer>.scales (N,) float: W = qweight * scale
        quantization_config = {"quant_method": "r1", "format_version": 1, "scheme": "int4" | "int8" | "mixed",
                               "group_size": G, "schemes": {scheme: layer count}, "modules_not_converted": [...]}

The token embedding may be stored quantized too (`save_quantized(..., embedding=True)`, what `r1 quantize`
does for int4 and int8), as llama.cpp's 4-bit files keep it in Q8_0: model.embed_tokens.qweight int8 (V, H)
and model.embed_tokens.scales float16 (V, H/32), W = qweight * scale per group of 32. It is dequantized at
load (the table is read by rows, not multiplied); a Q8_0 source round-trips bit for bit.

Biases and every non-quantized tensor are stored as in a float checkpoint (HF names). The layouts are the
portable ones: the kernels' packed forms depend on device and CPU, so they are rebuilt at load.
"""
from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from r1.config import ModelConfig
from r1.engine.quant import DIRECT_WEIGHT_READERS, matches, quant_modules, replace_module
from r1.engine.quant_linear import FP8, FP8Linear, Int4Linear, Int8Linear, QuantLinear, unpack_nibbles
from r1.formats.loader import empty_model, load_tensors
from r1.formats.names import hub_to_ours, mtp_copies, ours_to_hub
from r1.formats.safetensors_io import FormatError, iter_safetensors, tensor_names, write_checkpoint
from r1.model import CausalLM

DEEPSEEK_FP8_CONFIG = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                       "weight_block_size": [128, 128]}
R1_QUANT_METHOD = "r1"
FORMAT_VERSION = 2  # 2 added the float16 scales/mins int4 form and the int8 embedding; 1 still reads
READS_VERSIONS = (1, 2)
QUANT_LEAVES = ("qweight", "scales", "zeros", "mins", "weight_scale_inv")
EMBED = "model.embed_tokens"
EMBED_GROUP = 32
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json",
                   "chat_template.jinja")


# ---------------------------------------------------------------- config
def quantization_config(model: nn.Module) -> dict:
    """The `quantization_config` describing a model's quantized layers (DeepSeek's dict when all are FP8)."""
    qm = quant_modules(model)
    if not qm:
        raise ValueError("model has no quantized layers; quantize it first (r1.engine.quant.quantize_model)")
    counts = Counter(m.scheme for m in qm.values())
    kept = sorted(ours_to_hub(f"{n}.weight", model.config).removesuffix(".weight")
                  for n, m in model.named_modules() if isinstance(m, nn.Linear))
    if set(counts) == {"fp8"}:
        return dict(DEEPSEEK_FP8_CONFIG)
    groups = sorted({m.group_size for m in qm.values() if isinstance(m, Int4Linear)})
    return {"quant_method": R1_QUANT_METHOD, "format_version": FORMAT_VERSION,
            "scheme": next(iter(counts)) if len(counts) == 1 else "mixed",
            "group_size": groups[0] if len(groups) == 1 else (groups or None),
            "schemes": dict(sorted(counts.items())), "modules_not_converted": kept}


def read_quantization_config(path: str | Path) -> dict | None:
    """config.json's quantization_config of a checkpoint folder, or None (also for .gguf files)."""
    p = Path(path)
    if not p.is_dir() or not (p / "config.json").is_file():
        return None
    try:
        qc = json.loads((p / "config.json").read_text()).get("quantization_config")
    except json.JSONDecodeError as e:
        raise FormatError(f"{p / 'config.json'}: not valid JSON ({e})") from None
    if qc is not None and not isinstance(qc, dict):
        raise FormatError(f"{p / 'config.json'}: quantization_config must be an object, got {type(qc).__name__}")
    return qc


def _check_supported(qc: dict, where: str) -> None:
    method = qc.get("quant_method")
    if method == "fp8":
        if qc.get("fmt", "e4m3") != "e4m3" or list(qc.get("weight_block_size", [128, 128])) != [128, 128]:
            raise FormatError(f"{where}: quantization_config fp8 with fmt={qc.get('fmt')!r}, weight_block_size="
                              f"{qc.get('weight_block_size')!r}; r1 reads e4m3 with 128x128 blocks (DeepSeek's)")
    elif method == R1_QUANT_METHOD:
        if qc.get("format_version") not in READS_VERSIONS:
            raise FormatError(f"{where}: quantization_config format_version={qc.get('format_version')!r}; "
                              f"this r1 reads versions {', '.join(map(str, READS_VERSIONS))}")
    else:
        raise FormatError(f"{where}: quantization_config quant_method={method!r} is not supported "
                          f"(r1 reads 'fp8' as DeepSeek ships it, and its own {R1_QUANT_METHOD!r})")


# ---------------------------------------------------------------- tokenizer files
def tokenizer_files(source: str | Path) -> dict[str, str]:
    """The tokenizer files to place beside a checkpoint made from `source`: copied from a model folder,
    or written from a .gguf file's embedded tokenizer and chat template."""
    source = Path(source)
    if source.is_dir():
        return {f: (source / f).read_text() for f in TOKENIZER_FILES if (source / f).is_file()}
    if source.suffix != ".gguf":
        return {}
    from r1.chat.tokenizer import load_tokenizer

    tok = load_tokenizer(source)
    cfg = {k: v for k, v in tok.special_tokens.items() if v is not None}
    files = {"tokenizer.json": tok.backend.to_str(), "tokenizer_config.json": json.dumps(cfg, indent=2),
             "generation_config.json": json.dumps({"eos_token_id": tok.eos_token_ids}, indent=2)}
    if tok.chat_template is not None:
        files["chat_template.jinja"] = tok.chat_template
    return files


# ---------------------------------------------------------------- save
def half_int4(parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An int4 layer's scales/zeros as float16 scales/mins when that is exact, else as they are."""
    s, z = parts["scales"].float(), parts["zeros"].float()
    s16 = s.to(torch.float16)
    m16 = (z - 8 * s).to(torch.float16)
    if torch.isfinite(s16).all() and torch.isfinite(m16).all() and torch.equal(s16.float(), s) \
            and torch.equal(m16.float() + 8 * s16.float(), z):
        return {"qweight": parts["qweight"], "scales": s16, "mins": m16}
    return parts


def quantize_embedding(table: torch.Tensor) -> dict[str, torch.Tensor]:
    """(V, H) float -> int8 codes and float16 scales per group of 32 (llama.cpp's Q8_0): scale = amax / 127
    (as float16), codes = round(W / scale). A table dequantized from Q8_0 comes back exactly."""
    v, h = table.shape
    if h % EMBED_GROUP:
        raise ValueError(f"embedding width {h} is not a multiple of {EMBED_GROUP}")
    g = table.float().reshape(v, h // EMBED_GROUP, EMBED_GROUP)
    scale = (g.abs().amax(-1) / 127).to(torch.float16)
    if not torch.isfinite(scale).all():
        raise ValueError("embedding values exceed float16's range; keep it float (embedding=False)")
    safe = torch.where(scale == 0, torch.ones_like(scale), scale).float()
    q = torch.round(g / safe[..., None]).clamp(-127, 127).to(torch.int8)
    return {"qweight": q.reshape(v, h).contiguous(), "scales": scale.contiguous()}


def dequantize_embedding(q: torch.Tensor, scales: torch.Tensor, where: str) -> torch.Tensor:
    v, h = q.shape if q.dim() == 2 else (0, 0)
    if q.dtype != torch.int8 or q.dim() != 2 or tuple(scales.shape) != (v, h // EMBED_GROUP) or h % EMBED_GROUP:
        raise FormatError(f"{where}: {EMBED}: int8 codes {q.dtype} {tuple(q.shape)} and scales {tuple(scales.shape)} "
                          f"do not form groups of {EMBED_GROUP}")
    return (q.float().reshape(v, -1, EMBED_GROUP) * scales.float()[..., None]).reshape(v, h)


def _tensors(model: CausalLM, dtype: torch.dtype | None, embedding: bool = False) -> dict[str, torch.Tensor]:
    cfg = model.config
    out: dict[str, torch.Tensor] = {}
    qm = quant_modules(model)
    for name, m in qm.items():
        parts = m.export()
        if isinstance(m, Int4Linear):
            parts = half_int4(parts)
        for leaf, t in parts.items():
            out[ours_to_hub(f"{name}.{leaf}", cfg)] = t.detach().cpu().contiguous()
    for name, t in model.state_dict().items():  # quantized buffers are non-persistent: only biases of qm here
        if cfg.tie_word_embeddings and name == "lm_head.weight":
            continue
        t = t.detach().cpu()
        if dtype is not None and t.is_floating_point() and not name.endswith("e_score_correction_bias"):
            t = t.to(dtype)
        out[ours_to_hub(name, cfg)] = t.contiguous()
    emb = model.model.embed_tokens
    table = emb.weight if isinstance(emb, nn.Embedding) else emb.dequantize()  # GGUFEmbedding: blocks, no .weight
    head = model.lm_head.dequantize() if isinstance(model.lm_head, QuantLinear) else model.lm_head.weight
    if embedding:  # stored quantized; the head (tied or an MTP copy) reads the same dequantized table
        out.pop(f"{EMBED}.weight", None)
        packed = quantize_embedding(table.detach().cpu())
        out.update({f"{EMBED}.{k}": v for k, v in packed.items()})
        table = dequantize_embedding(packed["qweight"], packed["scales"], "save")
        if cfg.tie_word_embeddings:
            head = table
    elif not isinstance(emb, nn.Embedding):
        out["model.embed_tokens.weight"] = table.to(dtype or table.dtype).contiguous()
    for hub, ours in mtp_copies(cfg).items():  # DeepSeek's layout repeats embedding and head per MTP layer
        src = head if ours == "lm_head.weight" else table
        out[hub] = src.detach().cpu().to(dtype or src.dtype).clone()  # safetensors refuses shared storage
    return out


def save_quantized(model: CausalLM, folder: str | Path, dtype: torch.dtype | None = None,
                   extra_files: dict[str, str] | None = None, max_shard_bytes: int = 2 << 30,
                   embedding: bool = False) -> Path:
    """Write a quantized model as config.json (+ quantization_config) and safetensors shards, atomically:
    everything goes to a temp dir beside `folder`, renamed into place only when complete. `dtype` casts the
    float (non-quantized) tensors; `extra_files` (name -> text) adds tokenizer files and the like;
    `embedding` stores the token embedding as int8 groups of 32 (see the module docstring)."""
    folder = Path(folder)
    qc = quantization_config(model)
    tensors = _tensors(model, dtype, embedding)
    hf = model.config.to_hf()
    hf["quantization_config"] = qc
    fdt = dtype or model.dtype
    hf["torch_dtype"] = str(fdt).removeprefix("torch.")
    return write_checkpoint(folder, tensors, hf, extra_files, max_shard_bytes)


# ---------------------------------------------------------------- load
def _build(name: str, parts: dict[str, torch.Tensor], lin: nn.Linear, where: str) -> QuantLinear | torch.Tensor:
    """One layer's stored tensors -> its quantized module (or, for layers read as plain weights, a float
    weight). Shapes are checked against the float layer the config implies."""
    n, k = lin.out_features, lin.in_features
    keys = set(parts)
    try:
        if keys == {"weight", "weight_scale_inv"} and parts["weight"].dtype == FP8:
            m: QuantLinear = FP8Linear(parts["weight"], parts["weight_scale_inv"])
        elif keys == {"qweight", "scales", "zeros"}:
            q, s = parts["qweight"], parts["scales"]
            if q.dtype != torch.uint8 or q.dim() != 2 or s.dim() != 2 or s.shape[1] == 0 or q.shape[1] * 2 % s.shape[1]:
                raise ValueError(f"int4 tensors qweight {q.dtype} {tuple(q.shape)} / scales {tuple(s.shape)} "
                                 "do not form a valid layout")
            m = Int4Linear(unpack_nibbles(q), s, parts["zeros"], q.shape[1] * 2 // s.shape[1])
        elif keys == {"qweight", "scales"}:
            m = Int8Linear(parts["qweight"], parts["scales"])
        else:
            raise ValueError(f"tensors {sorted(keys)} do not form a quantized layer "
                             "(fp8: weight + weight_scale_inv; int4: qweight + scales + zeros; int8: qweight + scales)")
    except ValueError as e:
        raise FormatError(f"{where}: layer {name}: {e}") from None
    if (m.out_features, m.in_features) != (n, k):
        raise FormatError(f"{where}: layer {name} is stored as ({m.out_features}, {m.in_features}), "
                          f"but the config implies ({n}, {k})")
    if matches(name, DIRECT_WEIGHT_READERS):
        return m.dequantize()
    return m


def load_quantized(path: str | Path, dtype: torch.dtype = torch.float32,
                   device: str | torch.device = "cpu") -> CausalLM:
    """A quantized checkpoint (a folder written by `save_quantized`, a DeepSeek FP8 release, or a .gguf
    file) -> a CausalLM whose linear layers stay quantized. Float tensors are cast to `dtype`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file or folder")
    if path.is_file() and path.suffix == ".gguf":
        from r1.engine.quant_gguf import load_quantized_gguf

        return load_quantized_gguf(path, dtype, device)
    qc = read_quantization_config(path)
    if qc is None:
        raise FormatError(f"{path}: config.json has no quantization_config; load float checkpoints with r1.load_model")
    _check_supported(qc, str(path / "config.json"))
    cfg = ModelConfig.load(path)
    if cfg.num_nextn_predict_layers and not any(
            (hub_to_ours(n, cfg) or "").startswith("mtp.") for n in tensor_names(path)):
        warnings.warn(f"{path}: config has {cfg.num_nextn_predict_layers} MTP layer(s) but the checkpoint has no "
                      "MTP weights; loading without MTP (no speculative decoding)")
        cfg = cfg.replace(num_nextn_predict_layers=0)
    model = empty_model(cfg, dtype, device)
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    floats: list[tuple[str, torch.Tensor]] = []
    embed: dict[str, torch.Tensor] = {}
    for hub, t in iter_safetensors(path, keep_fp8=True):
        ours = hub_to_ours(hub, cfg)
        if ours is None:
            continue
        prefix, _, leaf = ours.rpartition(".")
        if prefix in linears and (leaf in QUANT_LEAVES or (leaf == "weight" and t.dtype == FP8)):
            parts.setdefault(prefix, {})[leaf] = t
        elif prefix == EMBED and leaf in ("qweight", "scales"):
            embed[leaf] = t
        else:
            floats.append((hub, t.to(dtype) if t.is_floating_point() else t))
    if embed:
        if set(embed) != {"qweight", "scales"}:
            raise FormatError(f"{path}: {EMBED} has {sorted(embed)}; a quantized embedding needs qweight and scales")
        floats.append((f"{EMBED}.weight", dequantize_embedding(embed["qweight"], embed["scales"], str(path)).to(dtype)))
    for name, p in parts.items():
        if "mins" in p:  # the float16 form: zero = min + 8 * scale, in float32 as the writer checked
            if set(p) != {"qweight", "scales", "mins"}:
                raise FormatError(f"{path}: layer {name}: mins come with qweight and scales only, got {sorted(p)}")
            p = {"qweight": p["qweight"], "scales": p["scales"].float(),
                 "zeros": p["mins"].float() + 8 * p["scales"].float()}
        built = _build(name, p, linears[name], str(path))
        if isinstance(built, torch.Tensor):  # a layer the model reads as a plain weight: float it is
            floats.append((ours_to_hub(f"{name}.weight", cfg), built.to(dtype)))
            continue
        if linears[name].bias is not None:  # same Parameter: load_tensors fills it with the stored bias
            built.bias = linears[name].bias
        replace_module(model, name, built.to(device=device, dtype=dtype))
    load_tensors(model, floats, str(path))
    return model.eval()


__all__ = ["DEEPSEEK_FP8_CONFIG", "TOKENIZER_FILES", "load_quantized", "quantization_config",
           "read_quantization_config", "save_quantized", "tokenizer_files"]

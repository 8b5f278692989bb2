"""HF safetensors checkpoints: single file or sharded (`model.safetensors.index.json`), read
lazily shard by shard, FP8 block-scaled weights (DeepSeek's release format) dequantized on load,
and written back in the same layout so `transformers` loads what `r1` writes.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from r1.config import ModelConfig
from r1.errors import R1Error
from r1.formats.names import mtp_copies, ours_to_hub

FP8_BLOCK = 128  # DeepSeek-V3 quantizes weights in 128x128 tiles, one fp32 scale per tile
SCALE_SUFFIX = "_scale_inv"


class FormatError(R1Error, ValueError):
    """A checkpoint file is malformed or does not fit the model; the message names file and tensor."""


def shard_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise FormatError(f"{index}: not a valid safetensors index ({e})") from None
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not (folder / f).exists()]
        if missing:
            raise FormatError(f"{index}: lists shards that are not in {folder}: {missing[:5]}")
        return [folder / f for f in files]
    single = folder / "model.safetensors"
    if single.exists():
        return [single]
    found = sorted(folder.glob("*.safetensors"))
    if not found:
        raise FormatError(f"{folder}: no model.safetensors, no index, no *.safetensors files")
    return found


def check_header(path: Path) -> None:
    """Validate the 8-byte length + JSON header before handing the file to the library, so a
    corrupted file gets an error naming it (and no giant allocation from a bogus length)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise FormatError(f"{path}: truncated safetensors file ({size} bytes, no header length)")
        n = int.from_bytes(head, "little")
        if n <= 0 or 8 + n > size:
            raise FormatError(f"{path}: header length {n} does not fit a {size}-byte file (truncated or not safetensors)")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FormatError(f"{path}: header is not valid JSON ({e})") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise FormatError(f"{path}: tensor data ends at byte {8 + n + end} but the file has {size} (truncated)")


def dequantize_fp8_block(w: torch.Tensor, scale_inv: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """w (out, in) float8_e4m3fn, scale_inv (ceil(out/128), ceil(in/128)) -> w * scale per tile."""
    out_f, in_f = w.shape
    s = scale_inv.float().repeat_interleave(FP8_BLOCK, 0)[:out_f].repeat_interleave(FP8_BLOCK, 1)[:, :in_f]
    return (w.float() * s).to(dtype)


def quantize_fp8_block(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse, as DeepSeek's checkpoints were made: per 128x128 tile, scale = amax / 448."""
    out_f, in_f = w.shape
    ro, ri = math.ceil(out_f / FP8_BLOCK), math.ceil(in_f / FP8_BLOCK)
    padded = torch.zeros(ro * FP8_BLOCK, ri * FP8_BLOCK, dtype=torch.float32)
    padded[:out_f, :in_f] = w.float()
    tiles = padded.view(ro, FP8_BLOCK, ri, FP8_BLOCK)
    amax = tiles.abs().amax(dim=(1, 3)).clamp(min=1e-12)  # (ro, ri)
    scale = amax / torch.finfo(torch.float8_e4m3fn).max
    q = (tiles / scale[:, None, :, None]).view_as(padded)[:out_f, :in_f].to(torch.float8_e4m3fn)
    return q, scale


def tensor_names(folder: str | Path) -> list[str]:
    """All tensor names of a checkpoint, from the headers only (no tensor data is read)."""
    names: list[str] = []
    for path in shard_files(Path(folder)):
        check_header(path)
        with safe_open(str(path), framework="pt") as f:
            names.extend(f.keys())
    return names


def iter_safetensors(folder: str | Path, dtype: torch.dtype = torch.float32,
                     keep_fp8: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (hub name, tensor) shard by shard. FP8 weights are dequantized with their
    `weight_scale_inv` unless keep_fp8, in which case both tensors are yielded as stored."""
    folder = Path(folder)
    for path in shard_files(folder):
        check_header(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                names = list(f.keys())
                scales = {n for n in names if n.endswith(SCALE_SUFFIX)}
                for name in names:
                    if name in scales and not keep_fp8:
                        continue
                    t = f.get_tensor(name)
                    if t.dtype == torch.float8_e4m3fn and not keep_fp8:
                        sname = name + SCALE_SUFFIX
                        if sname not in scales:
                            raise FormatError(f"{path}: FP8 tensor {name} has no {sname} in the same shard")
                        s = f.get_tensor(sname)
                        want = (math.ceil(t.shape[0] / FP8_BLOCK), math.ceil(t.shape[1] / FP8_BLOCK))
                        if tuple(s.shape) != want:
                            raise FormatError(f"{path}: {sname} has shape {tuple(s.shape)}, expected {want} for {name} {tuple(t.shape)}")
                        t = dequantize_fp8_block(t, s, dtype)
                    elif t.is_floating_point() and not keep_fp8:
                        t = t.to(dtype)
                    yield name, t
        except SafetensorError as e:
            raise FormatError(f"{path}: {e}") from None


def save_checkpoint(model: torch.nn.Module, folder: str | Path, max_shard_bytes: int = 2 << 30,
                    dtype: torch.dtype | None = None, extra_files: dict[str, str] | None = None) -> Path:
    """Write config.json + safetensors shards (+ index when sharded) atomically: everything goes
    to a temp dir beside the target, which is renamed into place only when complete."""
    folder = Path(folder)
    cfg: ModelConfig = model.config
    # (callers may pass any object with .config and .state_dict(), e.g. the trainer's sharded view)
    modules = list(model.modules()) if hasattr(model, "modules") else []
    if any(hasattr(m, "export") and hasattr(m, "dequantize") for m in modules):
        # quantized layers keep their bits in non-persistent buffers: this writer would drop them
        raise FormatError(f"{folder}: the model has quantized layers; save it with "
                          "r1.engine.quant_io.save_quantized (or `r1 quantize`)")
    if any(hasattr(m, "qkv_proj") or hasattr(m, "gate_up_proj") for m in modules):
        raise FormatError(f"{folder}: the model's projections were fused for inference (r1.engine.fuse); "
                          "save the unfused model")
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, t in model.state_dict().items():
        if cfg.tie_word_embeddings and name == "lm_head.weight":
            continue
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point() and not name.endswith("e_score_correction_bias"):
            t = t.to(dtype)
        tensors[ours_to_hub(name, cfg)] = t.contiguous()
        seen.add(id(t))
    for hub, ours in mtp_copies(cfg).items():  # DeepSeek's layout repeats these per MTP layer
        tensors[hub] = tensors["lm_head.weight" if ours == "lm_head.weight" and not cfg.tie_word_embeddings
                               else "model.embed_tokens.weight"].clone()
    hf = cfg.to_hf()
    if dtype is not None:
        hf["torch_dtype"] = str(dtype).removeprefix("torch.")
    return write_checkpoint(folder, tensors, hf, extra_files, max_shard_bytes)


def shard_tensors(tensors: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Split into shards of at most max_bytes (one tensor may exceed it alone). A module's tensors
    stay in one shard: readers expect `weight` and `weight_scale_inv` side by side."""
    by_module: dict[str, list[str]] = {}
    for n in sorted(tensors):
        by_module.setdefault(n.rsplit(".", 1)[0], []).append(n)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for names in by_module.values():
        nbytes = sum(tensors[n].numel() * tensors[n].element_size() for n in names)
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1].update({n: tensors[n] for n in names})
        size += nbytes
    return shards


def write_checkpoint(folder: str | Path, tensors: dict[str, torch.Tensor], config: dict,
                     extra_files: dict[str, str] | None = None, max_shard_bytes: int = 2 << 30) -> Path:
    """config.json + safetensors shards (+ index when sharded) + extra files, atomically: all of it
    goes to a temp dir beside `folder`, swapped into place only when complete, so at every moment
    one complete copy exists."""
    folder = Path(folder)
    shards = shard_tensors(tensors, max_shard_bytes)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        weight_map = {}
        for i, shard in enumerate(shards):
            fname = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(tmp / fname), metadata={"format": "pt"})
            weight_map.update({n: fname for n in shard})
        if len(shards) > 1:
            total = sum(t.numel() * t.element_size() for t in tensors.values())
            (tmp / "model.safetensors.index.json").write_text(
                json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        for fname, text in (extra_files or {}).items():
            (tmp / fname).write_text(text)
        if folder.exists():
            old = folder.with_name(folder.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder

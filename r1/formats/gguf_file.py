"""A bounds-checked GGUF reader over a read-only memory map.

Why not `gguf.GGUFReader`: it trusts the lengths in the file, so a corrupted array count such as 2**62
makes it allocate absurdly or loop for a very long time. Here every count and length is checked
against the bytes left in the file *before* anything is allocated, so a malformed or truncated file
fails within milliseconds with a `GGUFError` naming the file and the field or tensor.

Layout (llama.cpp `docs/gguf.md`, little-endian, version 2 and 3):

    magic "GGUF" | u32 version | u64 tensor_count | u64 kv_count
    kv_count x   (string key, u32 value_type, value)
    tensor_count x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset)
    padding to `general.alignment` (default 32) | tensor data, each at data_start + offset

A string is a u64 byte length and UTF-8 bytes; an array is a u32 item type, a u64 count and the items.
GGUF lists dims fastest-first (ne[0] is the contiguous one), the reverse of torch's order; `TensorInfo.shape`
is already in torch order. The `gguf` package is used for constants and dequantization only.
"""
from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType
from gguf import quants as gguf_quants

from r1.errors import R1Error

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NESTING = 8  # arrays of arrays are legal; deeper than this is a corrupted file, not a model

# Fixed-size scalar value types: GGUF value type -> (struct format, numpy dtype).
SCALAR_TYPES: dict[int, tuple[str, str]] = {
    GGUFValueType.UINT8: ("<B", "<u1"),
    GGUFValueType.INT8: ("<b", "<i1"),
    GGUFValueType.UINT16: ("<H", "<u2"),
    GGUFValueType.INT16: ("<h", "<i2"),
    GGUFValueType.UINT32: ("<I", "<u4"),
    GGUFValueType.INT32: ("<i", "<i4"),
    GGUFValueType.FLOAT32: ("<f", "<f4"),
    GGUFValueType.BOOL: ("<?", "<u1"),
    GGUFValueType.UINT64: ("<Q", "<u8"),
    GGUFValueType.INT64: ("<q", "<i8"),
    GGUFValueType.FLOAT64: ("<d", "<f8"),
}
# The fewest bytes one item of a type can take; used to reject counts the file cannot hold.
_MIN_ITEM_BYTES = {**{t: struct.calcsize(f) for t, (f, _) in SCALAR_TYPES.items()},
                   GGUFValueType.STRING: 8, GGUFValueType.ARRAY: 12}
# Smallest possible kv (empty key, u32 type, 1-byte value) and tensor info (empty name, 1 dim).
_MIN_KV_BYTES = 8 + 4 + 1
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8

# Types whose values we can turn into floats. Plain float types are viewed directly; the rest go
# through `gguf.quants`, whose block layouts tests/test_gguf_quants.py checks against ggml's C code.
FLOAT_TYPES = {
    GGMLQuantizationType.F32: np.float32,
    GGMLQuantizationType.F16: np.float16,
}
QUANT_TYPES = (
    GGMLQuantizationType.BF16,
    GGMLQuantizationType.Q8_0,
    GGMLQuantizationType.Q4_0,
    GGMLQuantizationType.Q4_1,
    GGMLQuantizationType.Q5_0,
    GGMLQuantizationType.Q5_1,
    GGMLQuantizationType.Q2_K,
    GGMLQuantizationType.Q3_K,
    GGMLQuantizationType.Q4_K,
    GGMLQuantizationType.Q5_K,
    GGMLQuantizationType.Q6_K,
)
SUPPORTED_TYPES = tuple(FLOAT_TYPES) + QUANT_TYPES


class GGUFError(R1Error, ValueError):
    pass


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ggml_type: GGMLQuantizationType
    shape: tuple[int, ...]  # torch order: reversed(ne)
    offset: int  # absolute byte offset in the file
    nbytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class RawTensor:
    """Quantized blocks as stored, for kernels that compute on them without expanding.

    `data` is a read-only uint8 view into the file of shape (*shape[:-1], row_bytes): one row of the
    logical tensor is `shape[-1] // block_size` consecutive blocks of `type_size` bytes.
    """

    name: str
    ggml_type: GGMLQuantizationType
    shape: tuple[int, ...]
    data: np.ndarray

    @property
    def block_size(self) -> int:
        return GGML_QUANT_SIZES[self.ggml_type][0]

    @property
    def type_size(self) -> int:
        return GGML_QUANT_SIZES[self.ggml_type][1]


class _Cursor:
    """Sequential little-endian reads over a buffer; every read is checked against the end first."""

    def __init__(self, buf: memoryview, path: str, start: int = 0):
        self.buf, self.path, self.pos, self.end = buf, path, start, len(buf)

    def fail(self, what: str, msg: str) -> GGUFError:
        return GGUFError(f"{self.path}: {what}: {msg} (at byte {self.pos} of {self.end})")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            raise self.fail(what, f"needs {n} bytes but only {self.end - self.pos} remain (file truncated or corrupt)")

    def scalar(self, vtype: int, what: str) -> Any:
        fmt, _ = SCALAR_TYPES[vtype]
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def u32(self, what: str) -> int:
        return self.scalar(GGUFValueType.UINT32, what)

    def u64(self, what: str) -> int:
        return self.scalar(GGUFValueType.UINT64, what)

    def string(self, what: str) -> str:
        n = self.u64(f"{what} (string length)")
        self.need(n, f"{what} (string of {n} bytes)")
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.fail(what, f"string is not valid UTF-8 ({e})") from None

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype in SCALAR_TYPES:
            return self.scalar(vtype, what)
        if vtype == GGUFValueType.STRING:
            return self.string(what)
        if vtype == GGUFValueType.ARRAY:
            if depth >= MAX_NESTING:
                raise self.fail(what, f"arrays nested deeper than {MAX_NESTING}")
            itype = self.u32(f"{what} (array item type)")
            count = self.u64(f"{what} (array length)")
            if itype not in _MIN_ITEM_BYTES:
                raise self.fail(what, f"unknown array item type {itype}")
            # The guard the `gguf` package lacks: a count the rest of the file cannot hold is corrupt.
            if count * _MIN_ITEM_BYTES[itype] > self.end - self.pos:
                raise self.fail(what, f"array length {count} of {GGUFValueType(itype).name} cannot fit in the "
                                      f"{self.end - self.pos} bytes left")
            if itype in SCALAR_TYPES:
                dt = np.dtype(SCALAR_TYPES[itype][1])
                arr = np.frombuffer(self.buf, dtype=dt, count=count, offset=self.pos).copy()
                self.pos += count * dt.itemsize
                return arr.astype(bool) if itype == GGUFValueType.BOOL else arr
            return [self.value(itype, f"{what}[{i}]", depth + 1) for i in range(count)]
        raise self.fail(what, f"unknown value type {vtype}")


class GGUFFile:
    """A parsed GGUF file: `metadata` (key -> value), `tensors` (name -> TensorInfo), tensor access.

    Numeric arrays in metadata come back as numpy arrays, string arrays as lists of str.
    Use as a context manager, or call `close()`, to release the memory map.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        p = Path(path)
        if not p.is_file():
            raise GGUFError(f"{self.path}: no such file")
        size = p.stat().st_size
        if size < 4 + 4 + 8 + 8:
            raise GGUFError(f"{self.path}: header: file is {size} bytes, too short to be GGUF")
        self._mm: np.memmap | None = np.memmap(p, dtype=np.uint8, mode="r")
        try:
            self._parse(memoryview(self._mm))
        except BaseException:
            self.close()
            raise

    # --- parsing ---
    def _parse(self, buf: memoryview) -> None:
        c = _Cursor(buf, self.path)
        c.need(4, "magic")
        magic = bytes(buf[0:4])
        if magic != GGUF_MAGIC:
            raise GGUFError(f"{self.path}: magic: expected {GGUF_MAGIC!r}, found {magic!r} (not a GGUF file)")
        c.pos = 4
        version = c.u32("version")
        if version not in SUPPORTED_VERSIONS:
            swapped = struct.unpack("<I", struct.pack(">I", version))[0]
            if swapped in SUPPORTED_VERSIONS:
                raise GGUFError(f"{self.path}: version: big-endian GGUF is not supported")
            raise GGUFError(f"{self.path}: version: {version} is not supported; r1 reads GGUF versions {SUPPORTED_VERSIONS}")
        self.version = version
        n_tensors = c.u64("tensor_count")
        n_kv = c.u64("kv_count")
        if n_kv * _MIN_KV_BYTES > c.end - c.pos:
            raise c.fail("kv_count", f"{n_kv} key/value pairs cannot fit in the file")
        if n_tensors * _MIN_TENSOR_INFO_BYTES > c.end - c.pos:
            raise c.fail("tensor_count", f"{n_tensors} tensor infos cannot fit in the file")

        self.metadata: dict[str, Any] = {}
        self.value_types: dict[str, int] = {}
        for i in range(n_kv):
            key = c.string(f"metadata key #{i}")
            if key in self.metadata:
                raise c.fail(f"metadata key {key!r}", "appears twice")
            vtype = c.u32(f"metadata {key!r} (value type)")
            self.value_types[key] = vtype
            self.metadata[key] = c.value(vtype, f"metadata {key!r}")

        self.alignment = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if self.value_types.get("general.alignment", GGUFValueType.UINT32) != GGUFValueType.UINT32 or \
                not isinstance(self.alignment, int) or self.alignment <= 0 or self.alignment & (self.alignment - 1):
            raise GGUFError(f"{self.path}: metadata 'general.alignment': {self.alignment!r} is not a power-of-two u32")

        infos: list[tuple[str, int, tuple[int, ...], int]] = []
        for i in range(n_tensors):
            name = c.string(f"tensor #{i} name")
            what = f"tensor {name!r}"
            n_dims = c.u32(f"{what} n_dims")
            if not 1 <= n_dims <= MAX_DIMS:
                raise c.fail(what, f"n_dims={n_dims}, must be 1..{MAX_DIMS}")
            ne = tuple(c.u64(f"{what} ne[{d}]") for d in range(n_dims))
            gtype = c.u32(f"{what} type")
            offset = c.u64(f"{what} offset")
            infos.append((name, gtype, ne, offset))
        # Tensor data starts at the next multiple of the alignment after the infos.
        self.data_offset = -(-c.pos // self.alignment) * self.alignment
        self.tensors: dict[str, TensorInfo] = {}
        for name, gtype, ne, offset in infos:
            self.tensors[name] = self._check_tensor(name, gtype, ne, offset, c.end)
        self._check_overlap()

    def _check_tensor(self, name: str, gtype: int, ne: tuple[int, ...], offset: int, file_size: int) -> TensorInfo:
        what = f"{self.path}: tensor {name!r}"
        if name in self.tensors:
            raise GGUFError(f"{what}: name appears twice")
        try:
            qtype = GGMLQuantizationType(gtype)
        except ValueError:
            raise GGUFError(f"{what}: unknown ggml type {gtype}") from None
        if qtype not in GGML_QUANT_SIZES:
            raise GGUFError(f"{what}: ggml type {qtype.name} has no known block size")
        block, type_size = GGML_QUANT_SIZES[qtype]
        if any(d == 0 for d in ne):
            raise GGUFError(f"{what}: has a zero dimension, ne={list(ne)}")
        if ne[0] % block:
            raise GGUFError(f"{what}: row length ne[0]={ne[0]} is not a multiple of the {qtype.name} block size {block}")
        n = 1
        for d in ne:
            n *= d  # Python ints: no overflow, and the size check below bounds it
        nbytes = n // block * type_size
        if offset % self.alignment:
            raise GGUFError(f"{what}: offset {offset} is not a multiple of the alignment {self.alignment}")
        start = self.data_offset + offset
        if start + nbytes > file_size:
            raise GGUFError(f"{what}: data [{start}, {start + nbytes}) for shape {list(reversed(ne))} {qtype.name} "
                            f"runs past the end of the file ({file_size} bytes)")
        return TensorInfo(name, qtype, tuple(reversed(ne)), start, nbytes)

    def _check_overlap(self) -> None:
        prev: TensorInfo | None = None
        for t in sorted(self.tensors.values(), key=lambda t: t.offset):
            if prev is not None and t.offset < prev.offset + prev.nbytes:
                raise GGUFError(f"{self.path}: tensor {t.name!r}: data overlaps tensor {prev.name!r} "
                                f"(sizes or offsets are corrupt)")
            prev = t

    # --- access ---
    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise GGUFError(f"{self.path}: no tensor named {name!r}") from None

    def _bytes(self, t: TensorInfo) -> np.ndarray:
        if self._mm is None:
            raise GGUFError(f"{self.path}: file is closed")
        return self._mm[t.offset:t.offset + t.nbytes]

    def raw(self, name: str) -> RawTensor:
        t = self.info(name)
        block, type_size = GGML_QUANT_SIZES[t.ggml_type]
        row_bytes = t.shape[-1] // block * type_size
        data = np.asarray(self._bytes(t)).reshape(*t.shape[:-1], row_bytes)
        return RawTensor(t.name, t.ggml_type, t.shape, data)

    def numpy(self, name: str) -> np.ndarray:
        """The tensor as float32 (or its own float type for F32/F16), in torch shape order; a copy."""
        t = self.info(name)
        raw = self.raw(name)
        if t.ggml_type in FLOAT_TYPES:
            return raw.data.view(FLOAT_TYPES[t.ggml_type]).reshape(t.shape).copy()
        if t.ggml_type not in QUANT_TYPES:
            raise GGUFError(f"{self.path}: tensor {name!r}: ggml type {t.ggml_type.name} cannot be dequantized; "
                            f"supported: {[q.name for q in SUPPORTED_TYPES]}")
        out = gguf_quants.dequantize(raw.data, t.ggml_type)
        if out.shape != t.shape:  # the package and our header parse must agree on the layout
            raise GGUFError(f"{self.path}: tensor {name!r}: dequantized to {out.shape}, expected {t.shape}")
        return out

    def tensor(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        t = self.info(name)
        if t.ggml_type == GGMLQuantizationType.BF16:
            # Reinterpret the bits rather than widen: exact, and no float32 copy for bf16 targets.
            bits = self.raw(name).data.view(np.int16).reshape(t.shape).copy()
            return torch.from_numpy(bits).view(torch.bfloat16).to(dtype)
        return torch.from_numpy(self.numpy(name)).to(dtype)

    def drop_pages(self, name: str) -> None:
        """Tell the kernel this process is done with a tensor's pages (madvise DONTNEED): a loader that
        copied the bytes elsewhere keeps its resident size at one copy. Later reads fault the pages
        back in from the file, so views stay valid."""
        mm = getattr(self._mm, "_mmap", None)
        if mm is None or not hasattr(mm, "madvise"):
            return
        t = self.info(name)
        page = mmap.PAGESIZE
        start = -(-t.offset // page) * page  # whole pages inside the tensor only: neighbours may be in use
        end = (t.offset + t.nbytes) // page * page
        if end > start:
            mm.madvise(mmap.MADV_DONTNEED, start, end - start)

    def close(self) -> None:
        # Arrays handed out by raw() keep their own reference to the map, so dropping ours is safe.
        self._mm = None

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GGUFFile({self.path!r}, version={self.version}, {len(self.metadata)} keys, {len(self.tensors)} tensors)"

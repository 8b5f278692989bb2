"""Malformed GGUF files: each must fail with a GGUFError naming the file and the field or tensor, fast.

Files are assembled byte by byte here (a writer would refuse to make them). Every parse runs in a
forked child with a deadline, so a reader that hangs or allocates without bound fails this test instead
of hanging the suite; the child times its own parse, which must finish within a second.
"""
from __future__ import annotations

import multiprocessing as mp
import struct
import time

import numpy as np
import pytest
from gguf import GGUFWriter

from r1.formats.gguf_file import GGUFError, GGUFFile
from r1.formats.gguf_io import load_gguf

DEADLINE_S = 5.0  # what the parse itself may take: generous, a loaded CI machine is slow; a hang is HANG_S
HANG_S = 20.0  # when the child is declared hung and killed

U32, I32, F32, STR, ARR, U64 = 4, 5, 6, 8, 9, 10


def s(text: str | bytes) -> bytes:
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(b)) + b


def kv(key: str, vtype: int, payload: bytes) -> bytes:
    return s(key) + struct.pack("<I", vtype) + payload


def kv_u32(key: str, v: int) -> bytes:
    return kv(key, U32, struct.pack("<I", v))


def kv_str(key: str, v: str) -> bytes:
    return kv(key, STR, s(v))


def kv_arr(key: str, itype: int, count: int, items: bytes) -> bytes:
    return kv(key, ARR, struct.pack("<IQ", itype, count) + items)


def tinfo(name: str, ne: tuple[int, ...], gtype: int, offset: int) -> bytes:
    return s(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne) + struct.pack("<IQ", gtype, offset)


def gguf_bytes(kvs: list[bytes], infos: list[bytes], data: bytes, *, magic=b"GGUF", version=3,
               n_tensors=None, n_kv=None, align=32) -> bytes:
    head = magic + struct.pack("<IQQ", version, len(infos) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(infos)
    body += b"\0" * (-len(body) % align)
    return body + data


W = np.arange(8 * 32, dtype=np.float32).reshape(8, 32)  # one valid F32 tensor, ne = [32, 8]
GOOD_KVS = [kv_str("general.architecture", "llama"), kv_u32("llama.block_count", 1)]
GOOD_INFOS = [tinfo("w", (32, 8), 0, 0)]


def good() -> bytes:
    return gguf_bytes(GOOD_KVS, GOOD_INFOS, W.tobytes())


def _parse(path: str) -> None:
    with GGUFFile(path) as f:
        f.tensor("w") if "w" in f.tensors else None


def run_isolated(fn, path: str) -> tuple[str, str, bool, float]:
    """(exception type, message, is GGUFError, seconds) from running fn(path) in a forked child."""
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def child() -> None:
        t0 = time.perf_counter()
        try:
            fn(path)
            out = ("no error", "", False)
        except BaseException as e:  # noqa: BLE001 - report anything, the parent judges
            out = (type(e).__name__, str(e), isinstance(e, GGUFError))
        send.send((*out, time.perf_counter() - t0))

    p = ctx.Process(target=child, daemon=True)
    p.start()
    send.close()  # so a child that dies shows up as EOF instead of a wait
    try:
        if not recv.poll(HANG_S):
            pytest.fail(f"parsing {path} hung for {HANG_S}s")
        try:
            return recv.recv()
        except EOFError:
            pytest.fail(f"parsing {path} killed the process (exit code {p.exitcode})")
    finally:
        if p.is_alive():
            p.kill()
        p.join()


def expect_error(tmp_path, data: bytes, *needles: str, fn=_parse) -> str:
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    kind, msg, is_gguf_error, seconds = run_isolated(fn, str(path))
    assert is_gguf_error, f"expected GGUFError, got {kind}: {msg}"
    assert str(path) in msg, msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    assert seconds < DEADLINE_S, f"took {seconds:.2f}s"
    return msg


def test_good_file_parses(tmp_path):
    (tmp_path / "ok.gguf").write_bytes(good())
    with GGUFFile(tmp_path / "ok.gguf") as f:
        assert f.get("llama.block_count") == 1
        assert f.tensor("w").numpy().tolist() == W.tolist()


def test_bad_magic(tmp_path):
    expect_error(tmp_path, b"GGUG" + good()[4:], "magic")
    expect_error(tmp_path, b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "magic", "not a GGUF")


@pytest.mark.parametrize("version", [1, 4, 0xFFFF, 3 << 24])
def test_unsupported_version(tmp_path, version):
    msg = expect_error(tmp_path, gguf_bytes(GOOD_KVS, GOOD_INFOS, W.tobytes(), version=version), "version")
    if version == 3 << 24:
        assert "big-endian" in msg


def test_empty_and_tiny_files(tmp_path):
    expect_error(tmp_path, b"", "too short")
    expect_error(tmp_path, b"GGUF\x03\0\0\0", "too short")


def test_truncated_anywhere(tmp_path):
    # A writer-made file cut at many points: header, keys, values, tensor infos, padding, data.
    path = tmp_path / "full.gguf"
    w = GGUFWriter(path, "llama")
    w.add_uint32("llama.block_count", 1)
    w.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
    w.add_array("tokenizer.ggml.scores", [0.5, 0.25, 0.125])
    w.add_tensor("w", W)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    full = path.read_bytes()
    cuts = sorted(set(np.linspace(24, len(full) - 1, 40).astype(int).tolist()))
    for cut in cuts:
        expect_error(tmp_path, full[:cut])


def test_absurd_array_length(tmp_path):
    # the length the `gguf` package would try to honour; here it must be refused before any allocation
    for itype in (I32, STR, ARR):
        bad = [*GOOD_KVS, kv_arr("tokenizer.ggml.tokens", itype, 2 ** 62, b"")]
        expect_error(tmp_path, gguf_bytes(bad, GOOD_INFOS, W.tobytes()), "tokenizer.ggml.tokens", "array length")


def test_absurd_string_length(tmp_path):
    bad_value = [*GOOD_KVS, kv("general.name", STR, struct.pack("<Q", 2 ** 62) + b"abc")]
    expect_error(tmp_path, gguf_bytes(bad_value, GOOD_INFOS, W.tobytes()), "general.name", "string")
    bad_key = [GOOD_KVS[0], struct.pack("<Q", 2 ** 63) + b"key"]
    expect_error(tmp_path, gguf_bytes(bad_key, GOOD_INFOS, W.tobytes()), "metadata key #1")
    bad_name = [struct.pack("<Q", 2 ** 40) + b"w"]
    expect_error(tmp_path, gguf_bytes(GOOD_KVS, bad_name, W.tobytes()), "tensor #0 name")


def test_absurd_counts(tmp_path):
    expect_error(tmp_path, gguf_bytes(GOOD_KVS, GOOD_INFOS, W.tobytes(), n_kv=2 ** 60), "kv_count")
    expect_error(tmp_path, gguf_bytes(GOOD_KVS, GOOD_INFOS, W.tobytes(), n_tensors=2 ** 60), "tensor_count")


def test_unknown_value_types(tmp_path):
    expect_error(tmp_path, gguf_bytes([*GOOD_KVS, kv("x.y", 77, b"\0" * 8)], GOOD_INFOS, W.tobytes()),
                 "'x.y'", "unknown value type 77")
    expect_error(tmp_path, gguf_bytes([*GOOD_KVS, kv_arr("x.z", 77, 1, b"\0" * 8)], GOOD_INFOS, W.tobytes()),
                 "'x.z'", "unknown array item type 77")
    nested = b"".join(struct.pack("<IQ", ARR, 1) for _ in range(20)) + struct.pack("<IQ", U32, 0)
    expect_error(tmp_path, gguf_bytes([*GOOD_KVS, kv("x.n", ARR, nested)], GOOD_INFOS, W.tobytes()), "nested")


def test_duplicate_key_and_tensor(tmp_path):
    expect_error(tmp_path, gguf_bytes([*GOOD_KVS, GOOD_KVS[1]], GOOD_INFOS, W.tobytes()), "llama.block_count", "twice")
    two = [tinfo("w", (32, 8), 0, 0), tinfo("w", (32, 8), 0, 1024)]
    expect_error(tmp_path, gguf_bytes(GOOD_KVS, two, W.tobytes() * 2), "'w'", "twice")


def test_bad_alignment(tmp_path):
    kvs = [*GOOD_KVS, kv_u32("general.alignment", 24)]
    expect_error(tmp_path, gguf_bytes(kvs, GOOD_INFOS, W.tobytes(), align=24), "general.alignment")


def test_tensor_offset_past_eof(tmp_path):
    expect_error(tmp_path, gguf_bytes(GOOD_KVS, [tinfo("w", (32, 8), 0, 2 ** 40)], W.tobytes()), "'w'", "past the end")
    expect_error(tmp_path, gguf_bytes(GOOD_KVS, [tinfo("w", (32, 8), 0, 64)], W.tobytes()), "'w'", "past the end")


def test_tensor_shape_does_not_match_its_bytes(tmp_path):
    # 8 rows declared, 4 rows of data present
    expect_error(tmp_path, gguf_bytes(GOOD_KVS, GOOD_INFOS, W[:4].tobytes()), "'w'", "past the end")
    # a product of dims that overflows 64 bits must not wrap around into a small size
    expect_error(tmp_path, gguf_bytes(GOOD_KVS, [tinfo("w", (2 ** 33, 2 ** 33), 0, 0)], W.tobytes()), "'w'")
    # Q4_0 rows must be whole 32-element blocks
    expect_error(tmp_path, gguf_bytes(GOOD_KVS, [tinfo("w", (30, 8), 2, 0)], W.tobytes()), "'w'", "block size")
    expect_error(tmp_path, gguf_bytes(GOOD_KVS, [tinfo("w", (32, 0), 0, 0)], W.tobytes()), "'w'", "zero dimension")
    expect_error(tmp_path, gguf_bytes(GOOD_KVS, [tinfo("w", (2,) * 9, 0, 0)], W.tobytes()), "'w'", "n_dims")
    two = [tinfo("a", (32, 8), 0, 0), tinfo("b", (32, 8), 0, 512)]  # b starts inside a
    expect_error(tmp_path, gguf_bytes(GOOD_KVS, two, W.tobytes() * 2), "overlaps")
    expect_error(tmp_path, gguf_bytes(GOOD_KVS, [tinfo("w", (32, 4), 0, 8)], W.tobytes()), "'w'", "alignment")


def test_unknown_ggml_type(tmp_path):
    expect_error(tmp_path, gguf_bytes(GOOD_KVS, [tinfo("w", (32, 8), 99, 0)], W.tobytes()), "'w'", "unknown ggml type 99")


def _load(path: str) -> None:
    load_gguf(path)


def test_unknown_architecture(tmp_path):
    kvs = [kv_str("general.architecture", "mamba"), kv_u32("mamba.block_count", 1)]
    expect_error(tmp_path, gguf_bytes(kvs, GOOD_INFOS, W.tobytes()), "general.architecture", "'mamba'", fn=_load)
    expect_error(tmp_path, gguf_bytes(GOOD_KVS[1:], GOOD_INFOS, W.tobytes()), "general.architecture", fn=_load)


def test_missing_and_mistyped_hyperparameters(tmp_path):
    expect_error(tmp_path, good(), "'llama.embedding_length'", "missing", fn=_load)
    required = [kv_u32(f"llama.{k}", 64) for k in ("embedding_length", "feed_forward_length", "attention.head_count",
                                                  "context_length")]
    kvs = [GOOD_KVS[0], *required, kv("llama.attention.layer_norm_rms_epsilon", F32, struct.pack("<f", 1e-5)),
           kv_str("llama.block_count", "thirty")]
    expect_error(tmp_path, gguf_bytes(kvs, GOOD_INFOS, W.tobytes()), "'llama.block_count'", "integer", fn=_load)


def test_missing_file(tmp_path):
    with pytest.raises(GGUFError, match="no such file"):
        GGUFFile(tmp_path / "nope.gguf")

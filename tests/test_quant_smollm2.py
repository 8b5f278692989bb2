"""Quantization on real weights (SmolLM2-135M-Instruct, Q4_1 GGUF): the file's 4-bit blocks run as int4
kernels with the same logits as the float-expanded model, and int8 keeps greedy outputs."""
import copy

import pytest
import torch

import r1
from r1.engine.generate import generate
from r1.engine.quant import QuantLinear, quantize_model, set_compute_dtype
from r1.engine.quant_gguf import load_quantized_gguf
from r1.engine.quant_io import tokenizer_files
from r1.engine.sampling import SamplingParams
from r1.formats.gguf_file import GGUFFile

COMPLETIONS = ["The capital of France is", "A haiku about the sea:\n", "Photosynthesis is the process by which",
               "Three prime numbers are", "To boil an egg, first", "In Spanish, 'good morning' is",
               "Twelve times seven equals", "The best way to learn to code is"]

@pytest.fixture(scope="module")
def smol(smollm2_gguf):
    return r1.load_model(smollm2_gguf), load_quantized_gguf(smollm2_gguf), r1.load_tokenizer(smollm2_gguf)


def _chat(tok, q):
    return tok.encode(tok.apply_chat_template([{"role": "user", "content": q}]))


def test_every_q4_1_layer_is_kept_4bit_and_decodes_bit_exactly(smol, smollm2_gguf):
    float_model, kept, _ = smol
    types = {t.name: t.ggml_type.name for t in GGUFFile(smollm2_gguf).tensors.values()}
    assert set(types[f"blk.{i}.{t}.weight"] for i in range(30)
               for t in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")) == {"Q4_1"}
    quantized = {n: m for n, m in kept.named_modules() if isinstance(m, QuantLinear)}
    assert len(quantized) == 7 * 30 and all(m.scheme == "int4" and m.group_size == 32 for m in quantized.values())
    # r1.load_model's float weights are gguf.quants' dequantization (q/k rows un-permuted alike). Every
    # third layer keeps this fast; test_quant_gguf.py checks the block decoding itself exhaustively.
    for name, m in quantized.items():
        if int(name.split(".")[2]) % 3 == 0:
            assert torch.equal(m.dequantize(), float_model.get_submodule(name).weight), name


def test_kept_quantized_logits_equal_float_expanded_within_float_tolerance(smol):
    float_model, kept, tok = smol
    x = torch.tensor([tok.encode("The history of Rome")])  # short: the fp32 CPU kernels are slow
    set_compute_dtype(kept, None)  # run the int4 kernel in fp32, the float model's dtype
    try:
        with torch.no_grad():
            want, got = float_model(x), kept(x)
    finally:
        set_compute_dtype(kept, torch.bfloat16)
    # same weights bit for bit; only the kernels' summation order differs (measured ~3e-6 of the max)
    assert (got - want).abs().max() <= 5e-5 * want.abs().max()


def test_default_bf16_kernels_stay_close_and_weights_are_4bit(smol):
    float_model, kept, tok = smol
    x = torch.tensor([_chat(tok, "Tell me about the history of Rome and its emperors.")])
    with torch.no_grad():
        want, got = float_model(x), kept(x)
    # bf16 activations through 30 layers: measured 1.8% relative (norm); the same order as running the
    # float model itself in bf16
    assert (got - want).norm() <= 0.05 * want.norm()
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.9
    # at rest: 0.5 B of codes + 0.25 B of fp32 scale/zero (+ a bf16 copy, 0.125 B) per weight, vs 4 B float
    qbytes = sum(m.weight_nbytes() for m in kept.modules() if isinstance(m, QuantLinear))
    fbytes = sum(float_model.get_submodule(n).weight.nbytes for n, m in kept.named_modules() if isinstance(m, QuantLinear))
    assert qbytes < 0.25 * fbytes


def test_int8_greedy_outputs_match_float_on_most_prompts(smol):
    float_model, _, tok = smol
    q = copy.deepcopy(float_model)
    quantize_model(q, "int8")
    ids = [tok.encode(t) for t in COMPLETIONS]  # plain text: short prompts keep the fp32 float model cheap
    p = SamplingParams(temperature=0, max_tokens=16, ignore_eos=True)
    want = generate(float_model, ids, p, tokenizer=tok)
    got = generate(q, ids, p, tokenizer=tok)
    # Greedy decoding flips at near-ties and then diverges for good; measured 5 of 8 identical.
    same = sum(a.token_ids == b.token_ids for a, b in zip(want, got))
    assert same >= 5, [(a.text, b.text) for a, b in zip(want, got)]
    # Teacher-forced on the float model's greedy outputs (which are its own argmax), int8 picks the same
    # next token almost everywhere: measured 94-96%; int4 with group 64 reaches only ~66%.
    seqs = [prompt + w.token_ids for prompt, w in zip(ids, want)]
    n = max(map(len, seqs))
    x = torch.tensor([[0] * (n - len(s_)) + s_ for s_ in seqs])  # left-padded batch
    mask = (torch.arange(n)[None, :] >= torch.tensor([n - len(s_) for s_ in seqs])[:, None]).long()
    with torch.no_grad():
        pred = q(x, attention_mask=mask)[:, n - 17 : n - 1].argmax(-1)  # predictions of the 16 generated tokens
    assert (pred == torch.tensor([w.token_ids for w in want])).float().mean() >= 0.9


def test_tokenizer_files_written_from_the_gguf_load_as_the_same_tokenizer(smol, smollm2_gguf, tmp_path):
    _, _, tok = smol
    for name, text in tokenizer_files(smollm2_gguf).items():
        (tmp_path / name).write_text(text)
    back = r1.load_tokenizer(tmp_path)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Héllo <|im_end|> wörld, 1+1?"}]
    assert back.apply_chat_template(msgs) == tok.apply_chat_template(msgs)
    text = back.apply_chat_template(msgs) + "Sure: 2.\n"
    assert back.encode(text) == tok.encode(text) and back.decode(back.encode(text)) == tok.decode(tok.encode(text))
    assert back.eos_token_ids == tok.eos_token_ids and back.special_tokens == tok.special_tokens


def test_int4_copy_of_the_q4_1_file_is_no_larger_and_gives_the_same_logits(smol, smollm2_gguf, tmp_path):
    """Its 4-bit layers keep their float16 scales and mins, the Q8_0 embedding is stored as int8 groups:
    bit-identical logits in fewer bytes (the float32 embedding and scales had doubled it: 185.6 MiB)."""
    from safetensors import safe_open

    from r1.cli import main
    from r1.engine.quant_io import load_quantized

    out = tmp_path / "int4"
    assert main(["quantize", str(smollm2_gguf), str(out), "--scheme", "int4"]) == 0
    size = sum(f.stat().st_size for f in out.iterdir())
    assert size <= smollm2_gguf.stat().st_size, (size, smollm2_gguf.stat().st_size)
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.embed_tokens.qweight").dtype == torch.int8
        assert f.get_tensor("model.layers.0.mlp.down_proj.mins").dtype == torch.float16
    ids = torch.tensor([[1, 2, 3, 400, 5000, 7]])
    with torch.no_grad():
        assert torch.equal(load_quantized(out)(ids), smol[1](ids))

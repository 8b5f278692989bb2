"""Data pipeline: packed pretraining windows, SFT rendering with assistant-only masks, the resumable
batch order and its split over ranks and micro-batches."""
from __future__ import annotations

import json

import pytest

import r1
from r1.chat.r1_template import ASSISTANT, EOS, GENERATION_PROMPT, USER
from r1.train.data import IGNORE, BatchSampler, DataError, ExampleDataset, micro_batches, pack_texts, read_texts
from r1.train.sft import SFTDataConfig, build_dataset, render_example
from train_common import tokenizer_dir  # noqa: F401  (fixture)
from train_common import one_thread  # noqa: F401  (autouse fixture)


def test_pack_texts_windows(tokenizer_dir):
    tok = r1.load_tokenizer(tokenizer_dir)
    docs = ["1 + 2 = 3", "4 * 5 = 20", "sorted: 1 2 3"] * 20
    ds = pack_texts(docs, tok, seq_len=16)
    stream = []
    for d in docs:
        stream += [tok.bos_token_id, *tok.encode(d), tok.eos_token_id]
    assert len(ds) == (len(stream) - 1) // 16
    b = ds.collate([0, 1])
    assert b.input_ids.shape == b.labels.shape == (2, 16) and b.attention_mask is None
    assert b.input_ids[0].tolist() == stream[:16] and b.labels[0].tolist() == stream[1:17]
    assert b.input_ids[1].tolist() == stream[16:32]  # consecutive windows: every token is a target once
    with pytest.raises(DataError, match="fewer than one window"):
        pack_texts(["1"], tok, seq_len=64)


def test_read_texts_sources(tmp_path):
    (tmp_path / "a.txt").write_text("doc one")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "doc two"}) + "\n\n" + json.dumps({"text": "doc three"}) + "\n")
    assert list(read_texts([tmp_path / "a.txt", str(tmp_path / "b.jsonl"), "inline doc"])) == \
        ["doc one", "doc two", "doc three", "inline doc"]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: no 'text' field"):
        list(read_texts(tmp_path / "bad.jsonl"))


def test_batch_sampler_is_resumable_and_reshuffles():
    s = BatchSampler(list(range(10)), global_batch=3, seed=5)
    seq = [s.next() for _ in range(4)]  # 3 batches per epoch: the 4th starts epoch 1
    assert s.batches_per_epoch == 3 and s.state_dict() == {"epoch": 1, "pos": 1}
    again = BatchSampler(list(range(10)), global_batch=3, seed=5)
    assert [again.next() for _ in range(4)] == seq
    state = s.state_dict()
    tail = [s.next() for _ in range(5)]
    resumed = BatchSampler(list(range(10)), global_batch=3, seed=5)
    resumed.load_state_dict(state)
    assert [resumed.next() for _ in range(5)] == tail
    assert sorted(sum(seq[:3], [])) != sorted(sum(tail[-3:], [])) or seq[:3] != tail[-3:]
    other = BatchSampler(list(range(10)), global_batch=3, seed=6)
    assert [other.next() for _ in range(3)] != seq[:3]
    with pytest.raises(DataError, match="fewer than one global batch"):
        BatchSampler([1, 2], global_batch=3)


def test_bucketing_groups_similar_lengths():
    lengths = [i % 50 + 1 for i in range(400)]
    s = BatchSampler(lengths, global_batch=8, seed=0, bucket=True, bucket_batches=50)
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in (s.next() for _ in range(20))]
    plain = BatchSampler(lengths, global_batch=8, seed=0)
    spread_plain = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in (plain.next() for _ in range(20))]
    assert sum(spread) * 5 < sum(spread_plain)


def test_micro_batches_partition_the_global_batch():
    g = list(range(12))
    parts = [micro_batches(g, r, 2, 3) for r in range(2)]
    assert sorted(sum(parts[0] + parts[1], [])) == g
    assert all(len(m) == 2 for p in parts for m in p)
    assert micro_batches(g, 0, 1, 1) == [g]
    with pytest.raises(DataError):
        micro_batches(list(range(10)), 0, 2, 3)


def test_sft_masks_cover_only_the_assistant(tokenizer_dir):
    tok = r1.load_tokenizer(tokenizer_dir)
    rec = {"messages": [{"role": "user", "content": "What is 2+3?"},
                        {"role": "assistant", "content": "<think>\n2+3=5\n</think>\n\n5"}]}
    [(ids, mask)] = render_example(tok, rec)
    n_prompt = mask.index(1)
    prompt = tok.decode(ids[:n_prompt], skip_special_tokens=False)
    target = tok.decode(ids[n_prompt:], skip_special_tokens=False)
    assert prompt == tok.apply_chat_template(rec["messages"][:1]) and prompt.endswith(GENERATION_PROMPT)
    # The generation prompt already opened <think>: the target continues it instead of opening another.
    assert target == "2+3=5\n</think>\n\n5" + EOS
    assert all(m == 1 for m in mask[n_prompt:]) and len(ids) == len(mask)

    ds = ExampleDataset([(ids, mask), (ids[:-3] + [tok.eos_token_id], mask[:-3] + [1])], pad_id=tok.pad_token_id)
    b = ds.collate([0, 1])
    assert b.input_ids.shape == (2, len(ids) - 1)
    learned = [t for t in b.labels[0].tolist() if t != IGNORE]
    assert learned == ids[n_prompt:]  # labels: exactly the assistant's tokens, EOS included
    assert b.attention_mask[1].tolist() == [1] * (len(ids) - 3) + [0] * 2  # right padding
    assert b.labels[1, -2:].tolist() == [IGNORE] * 2 and b.input_ids[1, -1].item() == tok.pad_token_id


def test_sft_multi_turn_and_formats(tokenizer_dir):
    tok = r1.load_tokenizer(tokenizer_dir)
    conv = {"messages": [{"role": "user", "content": "1+1?"},
                         {"role": "assistant", "content": "<think>\nadd\n</think>\n\n2"},
                         {"role": "user", "content": "2+2?"},
                         {"role": "assistant", "content": "<think>\nadd again\n</think>\n\n4"}]}
    last = render_example(tok, conv)
    both = render_example(tok, conv, assistant_turns="all")
    assert len(last) == 1 and len(both) == 2 and both[1] == last[0]
    ids, mask = last[0]
    context = tok.decode(ids[:mask.index(1)], skip_special_tokens=False)
    assert "add\n" not in context.replace("add again", "")  # earlier reasoning is stripped, as at inference
    assert f"{ASSISTANT}\n\n2{EOS}{USER}2+2?{GENERATION_PROMPT}" in context

    trl = {"prompt": [{"role": "user", "content": "1+1?"}], "completion": [{"role": "assistant", "content": "2"}]}
    plain = {"prompt": "1+1?", "completion": "2"}
    assert render_example(tok, trl) == render_example(tok, plain)
    raw_ids, raw_mask = render_example(tok, {"prompt": "Q: 1+1? A:", "completion": " 2"}, style="r1_zero")[0]
    assert tok.decode(raw_ids, skip_special_tokens=False) == "Q: 1+1? A: 2" + EOS
    assert sum(raw_mask) == len(tok.encode(" 2")) + 1
    with pytest.raises(DataError, match="tool_calls"):
        render_example(tok, {"messages": [{"role": "user", "content": "x"},
                                          {"role": "assistant", "content": None, "tool_calls": [{"function": {}}]}]})
    with pytest.raises(DataError, match="needs 'messages' or 'prompt'"):
        render_example(tok, {"text": "x"})


def test_sft_dataset_from_task_records_and_jsonl(tmp_path, tokenizer_dir):
    tok = r1.load_tokenizer(tokenizer_dir)
    ds, dropped = build_dataset(SFTDataConfig(tasks=["arithmetic"], n_per_task=12), tok)
    assert len(ds) == 12 and dropped == 0
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                     {"role": "assistant", "content": "a" * (i * 20 + 1)}]})
                           for i in range(4)))
    ds, dropped = build_dataset(SFTDataConfig(files=[str(f)], max_len=40), tok)
    assert dropped >= 1 and len(ds) + dropped == 4
    with pytest.raises(DataError, match="longer than data.max_len"):
        build_dataset(SFTDataConfig(files=[str(f)], max_len=3), tok)

"""The GRPO trainer end to end on a tiny policy: rollouts through the engine, masks, dynamic
sampling, learning, resume, the CLI, and rank splitting (r1/train/grpo.py, rollout.py)."""
import dataclasses
import json

import pytest
import torch

from r1.config import preset
from r1.model import build_model
from r1.train.config import OptimConfig, RunConfig
from r1.train.grpo import GRPOConfig, GRPODataConfig, GRPOTrainConfig, GRPOTrainer, render_prompt
from r1.train.grpo_loss import token_logps
from r1.train.rollout import Rollout, generate_groups, score
from r1.train.tokenizer_train import train_bpe


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors gain nothing from intra-op threads, and on a shared 2-core machine the
    # thread pool's barrier waits make every small op many times slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

SHORT = [{"prompt": f"Question {i}: say something.", "task": "arithmetic", "answer": str(i)} for i in range(16)]


@pytest.fixture(scope="module")
def tok():
    from r1.tasks.datasets import sft_records

    texts = [r["prompt"] + " " + r["completion"] for r in sft_records("arithmetic", 150, style="r1_zero")]
    return train_bpe(texts, vocab_size=320)


def policy(tok, seed=0):
    torch.manual_seed(seed)
    m = build_model(preset("tiny-qwen3", vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=512))
    m.init_weights(std=0.05)
    return m


def even_share(prompts, completions, completion_ids, **_):
    """A reward a policy can learn in a few steps: the share of even token ids."""
    return [sum(t % 2 == 0 for t in ids) / max(len(ids), 1) for ids in completion_ids]


def config(tmp_path, **grpo):
    kw = dict(num_generations=4, per_device_train_batch_size=8, gradient_accumulation_steps=1,
              max_completion_length=8, loss_type="dapo")
    kw.update(grpo)
    return GRPOTrainConfig(run=RunConfig(out_dir=str(tmp_path / "run"), max_steps=3, progress=False, save_every=1),
                           optim=OptimConfig(lr=1e-2, warmup_steps=0, schedule="constant", weight_decay=0.0),
                           grpo=GRPOConfig(**kw), data=GRPODataConfig(mode="r1_zero"))


def test_config_errors_are_actionable():
    with pytest.raises(ValueError, match="multiple of num_generations"):
        GRPOConfig(num_generations=3, per_device_train_batch_size=8)
    with pytest.raises(ValueError, match="loss_type"):
        GRPOConfig(loss_type="ppo")
    with pytest.raises(ValueError, match="scale_rewards"):
        GRPOConfig(scale_rewards=True)
    with pytest.raises(ValueError, match="unknown"):
        GRPOConfig(reward_funcs=["accuracy", "vibes"])
    with pytest.raises(ValueError, match="num_generations must be >= 2"):
        GRPOConfig(num_generations=1, per_device_train_batch_size=1)
    with pytest.raises(ValueError, match="r1_zero"):
        GRPODataConfig(mode="zero")


def test_rollout_shares_prompt_blocks_and_keeps_the_eos(tok):
    m = policy(tok)
    # distinct first tokens, so only the siblings of one prompt share blocks
    prompts = [tok.encode(f"{w} prompt long enough to fill a few blocks of the cache.") for w in ("One", "Two", "Six")]
    ro = generate_groups(m, tok, prompts, SHORT[:3], num_generations=4, max_completion_length=12,
                         seeds=[10, 20, 30], block_size=4)
    assert len(ro.completion_ids) == 12 and ro.num_groups == 3
    # every sibling after the first reads the prompt's full blocks from the prefix cache
    full = sum((len(p) - 1) // 4 * 4 for p in prompts)
    assert ro.cached_prompt_tokens == 3 * full
    eos = set(tok.eos_token_ids)
    for ids, text, trunc in zip(ro.completion_ids, ro.texts, ro.truncated):
        assert trunc == (len(ids) == 12 and ids[-1] not in eos)
        if not trunc:  # stopped: the EOS it sampled is part of what the policy is trained on
            assert ids[-1] in eos and tok.decode(ids[:-1]) == text
    again = generate_groups(m, tok, prompts, SHORT[:3], 4, 12, seeds=[10, 20, 30], block_size=4)
    assert again.completion_ids == ro.completion_ids  # seeded: reproducible


def test_fresh_engine_sees_weight_updates(tok):
    """The engine shares the policy's tensors; a new engine per rollout means no stale prefix KV."""
    m = policy(tok)
    p = [tok.encode("The same prompt, twice, before and after an update of the weights.")]
    before = generate_groups(m, tok, p, SHORT[:1], 4, 10, temperature=1.0, seeds=[5])
    with torch.no_grad():
        for w in m.parameters():
            w.add_(torch.randn_like(w) * 0.05)
    after = generate_groups(m, tok, p, SHORT[:1], 4, 10, temperature=1.0, seeds=[5])
    copy = policy(tok)
    copy.load_state_dict(m.state_dict())
    want = generate_groups(copy, tok, p, SHORT[:1], 4, 10, temperature=1.0, seeds=[5])
    assert after.completion_ids == want.completion_ids != before.completion_ids


def test_score_passes_columns_and_none_becomes_nan():
    ro = Rollout(2, [[1], [2]], [[5, 6], [7], [8, 9, 10], [11]], ["a", "b", "c", "d"], [False] * 4,
                 [{"prompt": "p0", "answer": "x"}, {"prompt": "p1", "answer": "y"}])

    def f(prompts, completions, answer, completion_ids, **_):
        assert prompts == ["p0", "p0", "p1", "p1"] and answer == ["x", "x", "y", "y"]
        return [len(i) if c != "b" else None for c, i in zip(completions, completion_ids)]
    out = score(ro, [f])
    assert out[:, 0].tolist()[0] == 2 and torch.isnan(out[1, 0]) and out[2:, 0].tolist() == [3, 1]


def test_step_logs_everything_and_masks_truncated(tok, tmp_path):
    cfg = config(tmp_path, beta=0.04, num_iterations=2, epsilon_high=0.28)
    tr = GRPOTrainer(cfg, model=policy(tok), tokenizer=tok, records=SHORT, reward_funcs=[even_share])
    m = tr.train_step()
    for key in ("rewards/even_share/mean", "reward", "accuracy", "completions/mean_length", "frac_reward_zero_std",
                "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "kl", "entropy",
                "rollout/tokens_per_s", "train/tokens_per_s", "loss", "grad_norm", "lr"):
        assert key in m and m[key] == m[key], key  # present and not NaN
    assert 0 <= m["reward"] <= 1 and m["entropy"] > 0 and m["kl"] >= 0
    # the second update of the batch ran against pi_old, and the policy moved away from the reference
    m2 = tr.train_step()
    assert m2["kl"] > 0
    ro = Rollout(4, [[1, 2]], [[3] * 8, [4, 5], [6] * 8, [7]], ["", "", "", ""], [True, False, True, False],
                 [SHORT[0]])
    masking = GRPOTrainer(config(tmp_path / "m", mask_truncated_completions=True), model=policy(tok), tokenizer=tok,
                          records=SHORT, reward_funcs=[even_share])
    mb = masking._micro_batches(ro, torch.ones(4))[0]
    assert mb["loss_mask"].sum(1).tolist() == [0, 2, 0, 1]  # truncated rows: no loss
    assert mb["completion_mask"].sum(1).tolist() == [8, 2, 8, 1] and mb["completion_ids"].shape == (4, 8)
    assert mb["prompt_ids"].shape == (1, 2) and mb["rows"].tolist() == [0, 0, 0, 0]  # the prompt once


@pytest.mark.parametrize("arch", ["tiny-qwen2", "tiny-deepseek"])
def test_shared_prompt_forward_equals_row_by_row(arch):
    """The fast path (prompts once, completions against their cached entries with autograd; then
    also only the real tokens' logits, and completions in length-sorted passes) gives the same
    logits and gradients as full [prompt + completion] rows."""
    from r1.train.grpo_forward import GroupedLM
    from r1.train.rollout import pad_left, pad_right

    torch.manual_seed(0)
    lm = build_model(preset(arch, vocab_size=64, max_position_embeddings=128))
    lm.init_weights(std=0.1)
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    comps = [[20, 21, 22], [23], [24, 25, 26, 27], [28, 29], [30, 31, 32, 33], [34]]
    rows = torch.tensor([0, 0, 1, 1, 2, 2])
    p_ids, p_mask = pad_left(prompts, 0)
    c_ids, c_mask = pad_right(comps, 0)
    model = GroupedLM(lm)
    grads = []
    for shared, packed, buckets in ((False, False, 1), (True, False, 1), (True, True, 1), (True, True, 3)):
        lm.zero_grad()
        logits = model(p_ids, p_mask, c_ids, c_mask, rows, shared=shared, packed=packed, buckets=buckets)
        if packed:  # only the real tokens' logits, scattered back to (b, C, V) to compare
            flat, where = logits
            logits = flat.new_zeros(c_ids.numel(), flat.shape[-1]).index_copy(0, where, flat).view(*c_ids.shape, -1)
            assert sorted(where.tolist()) == c_mask.reshape(-1).nonzero().squeeze(1).tolist()
        (logits.log_softmax(-1)[..., :40] * c_mask[..., None]).sum().backward()
        grads.append((logits.detach(), [p.grad.clone() for p in lm.parameters() if p.grad is not None]))
    (la, ga), rest = grads[0], grads[1:]  # the row-by-row reference first
    m = c_mask.bool()
    for lb, gb in rest:
        assert torch.allclose(la[m], lb[m], atol=1e-5)
        assert len(ga) == len(gb)
        for x, y in zip(ga, gb):
            assert (x - y).abs().max() <= 1e-5 * max(1.0, y.abs().max()), ((x - y).abs().max(), y.abs().max())


def test_grpo_learns_a_simple_reward(tok, tmp_path):
    # micro-batches of 12 split groups of 8: a group's prompt is then in two micro-batches
    cfg = config(tmp_path, num_generations=8, per_device_train_batch_size=12, gradient_accumulation_steps=2,
                 max_completion_length=8)
    cfg.run.max_steps = 12
    tr = GRPOTrainer(cfg, model=policy(tok), tokenizer=tok, records=SHORT, reward_funcs=[even_share])
    rewards = [tr.train_step()["reward"] for _ in range(12)]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.15, rewards


def test_dynamic_sampling_refills_with_informative_groups(tok, tmp_path):
    # prompts 0..7 always get reward 1 (no signal), 8..15 get a reward that varies by sample
    def reward(prompts, completions, completion_ids, answer, **_):
        return [1.0 if int(a) < 8 else float(len(i) % 2) + sum(i) % 3 for a, i in zip(answer, completion_ids)]
    cfg = config(tmp_path, dynamic_sampling=True, max_sampling_rounds=6)
    tr = GRPOTrainer(cfg, model=policy(tok), tokenizer=tok, records=SHORT, reward_funcs=[reward])
    ro, per_func, info = tr._rollout(1)
    assert ro.num_groups == 2 and info["short"] == 0
    assert all(int(r["answer"]) >= 8 for r in ro.records)  # only groups with reward variance were kept
    assert info["zero_groups"] >= 1 or info["draws"] == 1
    # without it the same draw keeps whatever came
    plain = GRPOTrainer(config(tmp_path / "b"), model=policy(tok), tokenizer=tok, records=SHORT, reward_funcs=[reward])
    assert plain._rollout(1)[2]["draws"] == 1


def test_resume_continues_exactly(tok, tmp_path):
    full = GRPOTrainer(config(tmp_path / "a"), model=policy(tok), tokenizer=tok, records=SHORT,
                       reward_funcs=[even_share])
    full.train()
    first = GRPOTrainer(dataclasses.replace(config(tmp_path / "b"), run=dataclasses.replace(
        config(tmp_path / "b").run, max_steps=2)), model=policy(tok), tokenizer=tok, records=SHORT,
        reward_funcs=[even_share])
    first.train()
    cfg = config(tmp_path / "b")
    cfg.run.resume = True
    resumed = GRPOTrainer(cfg, model=policy(tok, seed=123), tokenizer=tok, records=SHORT, reward_funcs=[even_share])
    assert resumed.step == 2
    resumed.train()
    for (n, a), b in zip(full.policy.state_dict().items(), resumed.policy.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), n
    logged = [json.loads(line)["step"] for line in (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3]
    assert (tmp_path / "b" / "run" / "model" / "tokenizer.json").is_file()


def test_r1_mode_renders_the_chat_template(tok):
    text = render_prompt({"prompt": "What is 2 + 3?"}, "r1", tok)
    assert text.endswith("<｜Assistant｜><think>\n") and "What is 2 + 3?" in text
    assert render_prompt({"prompt": "raw"}, "r1_zero", tok) == "raw"


def test_cli_runs_grpo_from_a_folder(tok, tmp_path, capsys):
    import r1
    from r1.train.cli import main
    from r1.train.tokenizer_train import tokenizer_files

    src = tmp_path / "base"
    r1.save_model(policy(tok), src, extra_files=tokenizer_files(tok))
    assert main(["train", "grpo", "--print-config", f"model.init_from={src}"]) == 0
    assert "num_generations: 8" in capsys.readouterr().out
    out = tmp_path / "cli"
    rc = main(["train", "grpo", "--out", str(out), "--max-steps", "1", f"model.init_from={src}", "data.mode=r1",
               "data.num_prompts=8", "grpo.num_generations=2", "grpo.per_device_train_batch_size=4",
               "grpo.max_completion_length=6", "grpo.beta=0.1", "run.progress=false",
               "grpo.reward_funcs=[accuracy,format,language]"])
    assert rc == 0
    rec = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert {"rewards/accuracy_reward/mean", "rewards/format_reward/mean", "kl", "accuracy"} <= set(rec)
    assert (out / "model" / "config.json").is_file()
    assert main(["train", "grpo", "--out", str(out), "grpo.loss_type=ppo", f"model.init_from={src}"]) == 2


def _ranks_worker(rank, world, port, tok_dir, out_dir, async_rollouts=False):
    import os

    from safetensors.torch import save_file

    import r1

    from r1.chat.tokenizer import Tokenizer

    base = r1.load_tokenizer(tok_dir)
    # many stop ids, so completion lengths (and so each rank's token count) differ
    tok = Tokenizer(base.backend, special_tokens=base.special_tokens, extra_eos_token_ids=range(40, 100))
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = config(out_dir, per_device_train_batch_size=8 // world, gradient_accumulation_steps=1, beta=0.1,
                 scale_rewards="batch", async_rollouts=async_rollouts)
    cfg.run.out_dir = str(out_dir / f"w{world}")
    tr = GRPOTrainer(cfg, model=policy(tok), tokenizer=tok, records=SHORT, reward_funcs=[even_share])
    m = tr.train_step()
    if rank == 0:
        # the gradient of the update (Adam's first step is ~lr * sign(g), too sensitive to rounding to compare)
        grads = {n: p.grad.contiguous() for n, p in tr.policy.named_parameters()}
        save_file(grads, str(out_dir / f"w{world}.safetensors"))
        (out_dir / f"w{world}.json").write_text(json.dumps(m))
    from r1.train.dist import cleanup

    tr.close()
    cleanup(tr.dist)
    # The results are on disk; skip interpreter teardown, where C++ threads of a finished
    # process group have aborted a rank on a loaded machine.
    os._exit(0)


@pytest.mark.parametrize("async_rollouts", [False, True])
def test_two_ranks_split_groups_and_match_one_rank(tok, tmp_path, async_rollouts):
    """2 ranks x 1 group each == 1 rank x 2 groups: same prompts, same samples, same update
    (scale_rewards=batch and the dapo token count over unequal lengths need the all-reduces).
    With asynchronous rollouts each rank has its own sampling worker."""
    import multiprocessing as mp
    import socket

    from safetensors.torch import load_file

    from r1.train.tokenizer_train import save_tokenizer

    tok_dir = save_tokenizer(tok, tmp_path / "tok")
    ctx = mp.get_context("spawn")
    for world in (1, 2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = [ctx.Process(target=_ranks_worker, args=(r, world, port, tok_dir, tmp_path, async_rollouts))
                 for r in range(world)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=240)
            assert p.exitcode == 0
    s1, s2 = load_file(str(tmp_path / "w1.safetensors")), load_file(str(tmp_path / "w2.safetensors"))
    m1, m2 = (json.loads((tmp_path / f"w{w}.json").read_text()) for w in (1, 2))
    for key in ("reward", "kl", "completions/mean_length", "entropy"):
        assert m1[key] == pytest.approx(m2[key], rel=1e-5), key
    assert m1["grad_norm"] > 0 and m1["completions/mean_length"] < 6
    for n in s1:
        assert torch.allclose(s1[n], s2[n], rtol=1e-4, atol=1e-7), n


def test_sampled_logps_are_the_policy_logps_at_the_temperature(tok):
    """Asynchronous rollouts train on the engine's record of pi_old: it must equal what the
    trainer's own forward computes for the same weights (temperature applied, EOS included)."""
    from r1.train.grpo_forward import GroupedLM
    from r1.train.rollout import pad_left, pad_right

    m = policy(tok)
    prompts = [tok.encode("First prompt of two."), tok.encode("And a second, longer prompt here.")]
    ro = generate_groups(m, tok, prompts, SHORT[:2], 3, 10, temperature=0.7, seeds=[1, 2], logprobs=True)
    assert [len(x) for x in ro.logps] == [len(c) for c in ro.completion_ids]
    p_ids, p_mask = pad_left(prompts, 0)
    c_ids, c_mask = pad_right(ro.completion_ids, 0)
    with torch.no_grad():
        want = token_logps(GroupedLM(m)(p_ids, p_mask, c_ids, c_mask, torch.tensor([0, 0, 0, 1, 1, 1])), c_ids, 0.7)
    for r, lps in enumerate(ro.logps):
        assert torch.allclose(torch.tensor(lps), want[r, :len(lps)], atol=1e-4), r
    assert generate_groups(m, tok, prompts, SHORT[:2], 3, 10, temperature=0.7, seeds=[1, 2]).logps is None


def test_async_rollouts_train_and_resume_exactly(tok, tmp_path):
    """The worker samples step k+1 while step k trains; a run stopped after 2 steps and resumed
    ends with the weights of an uninterrupted 3-step run (the rollout sampled ahead is saved)."""
    def trainer(path, steps, resume=False, seed=0):
        cfg = config(path, async_rollouts=True)
        cfg.run.max_steps, cfg.run.resume = steps, resume
        return GRPOTrainer(cfg, model=policy(tok, seed), tokenizer=tok, records=SHORT, reward_funcs=[even_share])
    full = trainer(tmp_path / "a", 3)
    history = full.train()
    assert full.ahead.worker is None  # train() stops its worker
    assert [h["step"] for h in history] == [1, 2, 3]
    for h in history:
        assert h["time/rollout_wait_s"] >= 0 and h["loss"] == h["loss"] and h["clip_ratio/region_mean"] >= 0
    trainer(tmp_path / "b", 2).train()
    resumed = trainer(tmp_path / "b", 3, resume=True, seed=123)
    assert resumed.step == 2 and resumed.ahead.ready is not None  # the rollout sampled ahead came back
    resumed.train()
    for (n, a), b in zip(full.policy.state_dict().items(), resumed.policy.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), n


def test_async_rollouts_lag_one_update_and_report_worker_errors(tok, tmp_path):
    from r1.train.rollout_worker import RolloutWorker, RolloutWorkerError

    tr = GRPOTrainer(config(tmp_path, async_rollouts=True), model=policy(tok), tokenizer=tok, records=SHORT,
                     reward_funcs=[even_share])
    try:
        tr.train_step()
        # step 2 trains on samples of the weights before update 1: their logps are pi_old, which
        # the updated policy no longer matches exactly
        ro, _, _ = tr._rollout(2)
        mb = tr._micro_batches(ro, torch.ones(len(ro.completion_ids)))[0]
        with torch.no_grad():
            now = tr._logps(tr.model, mb)
        mask = mb["completion_mask"].bool()
        assert not torch.allclose(now[mask], mb["old_logps"][mask], atol=1e-4)
    finally:
        tr.close()
    w = RolloutWorker(policy(tok), tok)
    try:
        w.submit(prompt_ids=[[10**6]], num_generations=2, max_completion_length=4)
        with pytest.raises(RolloutWorkerError, match="outside the vocabulary"):
            w.result([{}])
    finally:
        w.close()
    with pytest.raises(ValueError, match="dynamic_sampling"):
        GRPOConfig(async_rollouts=True, dynamic_sampling=True)


def test_compiled_rollouts_train_like_eager_ones(tok, tmp_path, monkeypatch):
    """grpo.compile_rollouts: the trainer makes one CompiledDecode and every rollout's engine uses
    it, across the in-place weight updates between steps. Traced with dynamo's "eager" backend
    (what inductor would get, compiled in seconds), the run ends with the weights of an eager one."""
    import r1.train.grpo as grpo_mod
    from r1.engine.compiled import CompiledDecode

    made = []
    monkeypatch.setattr(grpo_mod, "rollout_compiler",
                        lambda model, rows: made.append(CompiledDecode(model, rows, backend="eager")) or made[-1])
    runs = []
    for compile_rollouts in (False, True):
        tr = GRPOTrainer(config(tmp_path / str(compile_rollouts), compile_rollouts=compile_rollouts),
                         model=policy(tok), tokenizer=tok, records=SHORT, reward_funcs=[even_share])
        tr.train()
        runs.append(tr.policy.state_dict())
    assert len(made) == 1 and made[0].max_rows == 2 * 4  # prompts per step x G
    assert made[0].in_place_graph and any(k[1] for keys in made[0]._checked.values() for k in keys)
    for (n, a), b in zip(runs[0].items(), runs[1].values()):
        assert torch.allclose(a, b, atol=1e-6), n


def test_async_worker_compiles_its_decode_steps(tok):
    """The worker builds its CompiledDecode (inductor) once; its samples are the eager worker's."""
    from r1.train.rollout_worker import RolloutWorker

    model = policy(tok)
    prompts = [tok.encode(r["prompt"]) for r in SHORT[:2]]
    got = []
    for rows in (0, 8):
        w = RolloutWorker(model, tok, threads=1, compile_rows=rows)
        try:
            for seed in (1, 2):  # the second rollout reuses the graphs
                w.submit(prompt_ids=prompts, num_generations=4, max_completion_length=12, seeds=[seed, seed + 7])
                got.append(w.result(SHORT[:2]))
        finally:
            w.close()
    for eager, compiled in zip(got[:2], got[2:]):
        assert compiled.completion_ids == eager.completion_ids
        for a, b in zip(compiled.logps, eager.logps):
            assert a == pytest.approx(b, abs=1e-4)


def test_async_worker_and_trainer_split_the_threads(tok):
    """With the worker running, the trainer keeps the threads the worker did not take (no more
    threads than it had across both processes), and gets its own count back at close()."""
    from r1.train.rollout_worker import SampledAhead

    torch.set_num_threads(2)
    ahead = SampledAhead(policy(tok), tok, SHORT)
    try:
        ahead.submit([0], prompt_ids=[tok.encode(SHORT[0]["prompt"])], num_generations=2, max_completion_length=4)
        assert torch.get_num_threads() == 1  # the worker took half of 2
        assert ahead.take()[1].completion_ids
    finally:
        ahead.close()
        after = torch.get_num_threads()
        torch.set_num_threads(1)  # the module's setting
    assert after == 2

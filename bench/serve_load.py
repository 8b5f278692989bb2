"""Load test of `r1 serve` on loopback: N concurrent streaming clients for a bounded time, then
mid-stream disconnects, with the server's memory and KV-cache usage read before and after.

    python bench/serve_load.py                       # tiny random model, 64 clients, 2 x 30 s
    python bench/serve_load.py --model model.gguf --max-tokens 16

Prints a table and writes results/serve_load.json. What it checks (exit code 1 otherwise):
zero errors except deliberate 429s beyond the waiting-queue bound; the server's RSS after the
second round within 10% of the first (memory flat); after the disconnects, KV usage back to zero
and a fresh request completing promptly.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from r1.serve.health import wait_healthy

ROOT = Path(__file__).resolve().parents[1]


def tiny_model_dir(folder: Path) -> Path:
    """A random tiny-qwen2 with SmolLM2's tokenizer and the R1 chat template (its prompt opens
    <think>, so the stream carries reasoning_content deltas like R1's)."""
    import torch

    import r1
    from r1.chat import R1_CHAT_TEMPLATE
    from r1.commands.common import smollm2_gguf
    from r1.config import preset
    from r1.model import build_model

    tok = r1.load_tokenizer(smollm2_gguf())
    torch.manual_seed(0)
    model = build_model(preset("tiny-qwen2", vocab_size=tok.vocab_size))
    model.init_weights(std=0.1)
    cfg = {"bos_token": tok.bos_token, "eos_token": tok.eos_token, "chat_template": R1_CHAT_TEMPLATE}
    r1.save_model(model, folder, extra_files={"tokenizer.json": tok.backend.to_str(),
                                              "tokenizer_config.json": json.dumps(cfg)})
    return folder


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def one_stream(c: httpx.AsyncClient, body: dict, stats: dict, drop_after_first: bool = False) -> None:
    t0 = time.perf_counter()
    try:
        async with c.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code == 429:
                await r.aread()
                stats["429"] += 1
                stats["retry_after"] = float(r.headers.get("retry-after", 1))
                return
            if r.status_code != 200:
                stats["errors"] += 1
                stats["error_samples"].append(f"{r.status_code}: {(await r.aread())[:200]!r}")
                return
            first, tokens, done = None, 0, False
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    break
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    stats["errors"] += 1
                    stats["error_samples"].append(str(chunk["error"])[:200])
                    return
                for ch in chunk.get("choices", []):
                    d = ch.get("delta", {})
                    if d.get("content") or d.get("reasoning_content"):
                        tokens += 1
                        if first is None:
                            first = time.perf_counter() - t0
                            if drop_after_first:
                                stats["dropped"] += 1
                                return  # leaving the block closes the connection mid-stream
            if not done:
                stats["errors"] += 1
                stats["error_samples"].append("stream ended without [DONE]")
                return
            stats["ok"] += 1
            stats["ttft"].append(first or 0.0)
            stats["e2e"].append(time.perf_counter() - t0)
            stats["deltas"] += tokens
    except (httpx.HTTPError, json.JSONDecodeError) as e:
        stats["errors"] += 1
        stats["error_samples"].append(f"{type(e).__name__}: {e}")


def new_stats() -> dict:
    return {"ok": 0, "429": 0, "errors": 0, "dropped": 0, "deltas": 0, "ttft": [], "e2e": [], "error_samples": []}


async def load_round(url: str, clients: int, duration: float, max_tokens: int, model: str, top_p: float) -> dict:
    stats = new_stats()
    deadline = time.monotonic() + duration
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(300, connect=30), limits=limits) as c:
        async def client(i: int) -> None:
            k = 0
            while time.monotonic() < deadline:
                body = {"model": model, "stream": True, "max_tokens": max_tokens, "seed": i * 1000 + k, "top_p": top_p,
                        "messages": [{"role": "user", "content": f"Client {i} asks question {k}: why is the sky blue?"}]}
                before = stats["429"]
                await one_stream(c, body, stats)
                k += 1
                if stats["429"] > before:
                    await asyncio.sleep(stats["retry_after"])  # honour the back-off the 429 asks for
        t0 = time.perf_counter()
        await asyncio.gather(*[client(i) for i in range(clients)])
        stats["wall_s"] = time.perf_counter() - t0
    return stats


async def disconnect_round(url: str, n: int, concurrency: int, model: str) -> dict:
    stats = new_stats()
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(300, connect=30)) as c:
        async def one(i: int) -> None:
            async with sem:
                # no max_tokens: the rest of the context, so every one is cut off long before its end
                body = {"model": model, "stream": True,
                        "messages": [{"role": "user", "content": f"Tell me a very long story number {i}."}]}
                await one_stream(c, body, stats, drop_after_first=True)
        await asyncio.gather(*[one(i) for i in range(n)])
    return stats


def summarize(s: dict) -> dict:
    q = (lambda xs, p: statistics.quantiles(xs, n=100)[p - 1] if len(xs) >= 2 else (xs[0] if xs else float("nan")))
    out = {k: s[k] for k in ("ok", "429", "errors", "dropped", "deltas")}
    out["error_samples"] = s["error_samples"][:5]
    if s.get("wall_s"):
        out["wall_s"] = round(s["wall_s"], 1)
        out["deltas_per_s"] = round(s["deltas"] / s["wall_s"], 1)
    if s["ttft"]:
        out["ttft_p50_s"], out["ttft_p95_s"] = round(q(s["ttft"], 50), 3), round(q(s["ttft"], 95), 3)
        out["e2e_p50_s"], out["e2e_p95_s"] = round(q(s["e2e"], 50), 3), round(q(s["e2e"], 95), 3)
    return out


def run(args: argparse.Namespace) -> dict:
    tmp = tempfile.TemporaryDirectory()
    model_path = Path(args.model) if args.model else tiny_model_dir(Path(tmp.name) / "r1-tiny-random")
    name = "bench-model"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "r1.commands.serve_cmd", str(model_path), "--host", "127.0.0.1", "--port", str(port),
           "--served-model-name", name, "--max-num-seqs", str(args.max_num_seqs), "--max-waiting", str(args.max_waiting),
           "--log-level", "info", "--shutdown-grace", "5"]
    if args.thinking_budget is not None:
        cmd += ["--thinking-budget", str(args.thinking_budget)]
    log = open(Path(tmp.name) / "server.log", "w+")
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, text=True)
    result: dict = {"device": f"CPU ({os.cpu_count()} cores), loopback", "model": str(model_path) if args.model else
                    "tiny-qwen2 (random) + SmolLM2 tokenizer + R1 template", "clients": args.clients,
                    "round_s": args.duration, "max_tokens": args.max_tokens, "max_num_seqs": args.max_num_seqs,
                    "max_waiting": args.max_waiting, "top_p": args.top_p}
    try:
        why = wait_healthy(url, server, 600)
        if why == "exited":
            log.seek(0)
            raise RuntimeError(f"the server exited: {log.read()[-2000:]}")
        if why:
            raise RuntimeError("the server did not become healthy in 600 s")
        httpx.post(url + "/v1/chat/completions", timeout=300, json={  # warm-up
            "model": name, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}).raise_for_status()
        result["rss_start_mb"] = round(rss_mb(server.pid), 1)
        rounds = []
        for r in range(args.rounds):
            s = summarize(asyncio.run(load_round(url, args.clients, args.duration, args.max_tokens, name, args.top_p)))
            s["rss_after_mb"] = round(rss_mb(server.pid), 1)
            rounds.append(s)
        result["rounds"] = rounds
        d = summarize(asyncio.run(disconnect_round(url, args.disconnects, args.disconnect_concurrency, name)))
        t0 = time.perf_counter()
        idle = False
        while time.perf_counter() - t0 < 30:  # the aborts land within a step or two
            m = httpx.get(url + "/metrics").text
            if metric(m, "r1_kv_cache_usage_ratio") == 0 and metric(m, "r1_num_requests_running") == 0 \
                    and metric(m, "r1_num_requests_waiting") == 0:
                idle = True
                break
            time.sleep(0.1)
        d["kv_usage_zero_after_s"] = round(time.perf_counter() - t0, 2) if idle else None
        t0 = time.perf_counter()
        fresh = httpx.post(url + "/v1/chat/completions", timeout=300, json={
            "model": name, "max_tokens": args.max_tokens, "messages": [{"role": "user", "content": "fresh question"}]})
        d["fresh_status"], d["fresh_latency_s"] = fresh.status_code, round(time.perf_counter() - t0, 2)
        m = httpx.get(url + "/metrics").text
        d["kv_usage_after_fresh"] = metric(m, "r1_kv_cache_usage_ratio")
        d["aborted_499"] = metric(m, 'r1_requests_total{endpoint="chat",status="499"}')
        d["rss_after_mb"] = round(rss_mb(server.pid), 1)
        result["disconnect"] = d
    finally:
        server.terminate()  # SIGTERM: uvicorn's graceful shutdown
        try:
            result["server_exit_code"] = server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            result["server_exit_code"] = "killed"
        log.seek(0)
        server_log = log.read()
        log.close()
        tmp.cleanup()
    # uvicorn finishes its graceful shutdown, then re-raises the SIGTERM it caught: -15 is a clean exit
    result["clean_shutdown"] = result["server_exit_code"] in (0, -15) and "Traceback" not in server_log \
        and "Finished server process" in server_log
    if "Traceback" in server_log:
        result["server_log_tail"] = server_log[-3000:]
    rss = [r["rss_after_mb"] for r in result["rounds"]]
    result["checks"] = {
        "no_errors": all(r["errors"] == 0 for r in result["rounds"]) and result["disconnect"]["errors"] == 0,
        "memory_flat": len(rss) < 2 or rss[-1] <= rss[0] * 1.10,
        "kv_freed_after_disconnects": result["disconnect"]["kv_usage_zero_after_s"] is not None,
        "fresh_request_prompt": result["disconnect"]["fresh_status"] == 200 and result["disconnect"]["fresh_latency_s"] < 30,
        "clean_shutdown": result["clean_shutdown"],
    }
    return result


def print_table(res: dict) -> None:
    print(f"\nr1 serve load test -- {res['device']}; model: {res['model']}")
    print(f"{res['clients']} streaming clients x {len(res['rounds'])} rounds of {res['round_s']} s, max_tokens "
          f"{res['max_tokens']}, batch {res['max_num_seqs']}, queue bound {res['max_waiting']}\n")
    hdr = f"{'round':<7}{'ok':>6}{'429':>6}{'errors':>8}{'deltas/s':>10}{'TTFT p50':>10}{'TTFT p95':>10}{'e2e p50':>9}{'e2e p95':>9}{'RSS MB':>9}"
    print(hdr)
    print("-" * len(hdr))
    for i, r in enumerate(res["rounds"], 1):
        print(f"{i:<7}{r['ok']:>6}{r['429']:>6}{r['errors']:>8}{r.get('deltas_per_s', 0):>10}"
              f"{r.get('ttft_p50_s', float('nan')):>10}{r.get('ttft_p95_s', float('nan')):>10}"
              f"{r.get('e2e_p50_s', float('nan')):>9}{r.get('e2e_p95_s', float('nan')):>9}{r['rss_after_mb']:>9}")
    d = res["disconnect"]
    print(f"\ndisconnects: {d['dropped']} dropped mid-stream ({d['429']} got 429, {d['errors']} errors); KV usage 0 after "
          f"{d['kv_usage_zero_after_s']} s; fresh request {d['fresh_status']} in {d['fresh_latency_s']} s; "
          f"RSS {d['rss_after_mb']} MB (start {res['rss_start_mb']} MB)")
    print("checks: " + ", ".join(f"{k}={'PASS' if v else 'FAIL'}" for k, v in res["checks"].items()))
    for r in res["rounds"] + [d]:
        for e in r.get("error_samples", []):
            print("  error:", e)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model path (default: a random tiny model written to a temp dir)")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--duration", type=float, default=30.0, help="seconds per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--max-num-seqs", type=int, default=16)
    p.add_argument("--max-waiting", type=int, default=32)
    p.add_argument("--thinking-budget", type=int, default=8)
    # A random model's next-token distribution is flat, so a top-p nucleus spans most of the 49k
    # vocabulary and the engine's per-row top-p falls back to a full sort (~15 ms a row here): the
    # default measures the server, not that worst case. Pass --top-p 0.95 to include it.
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--disconnects", type=int, default=200)
    p.add_argument("--disconnect-concurrency", type=int, default=16)
    p.add_argument("--out", default=str(ROOT / "results" / "serve_load.json"))
    args = p.parse_args(argv)
    res = run(args)
    print_table(res)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"\nwrote {out}")
    return 0 if all(res["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Asynchronous rollouts: a child process samples the next step's groups while this one trains.

Synchronous GRPO alternates: sample (engine, no gradients), then train. For a small model each
half is a stream of small ops that intra-op threads barely split (a second torch thread made
r1's synchronous steps 0.8-1.4x as fast across six runs on the 2-core dev VM). With `grpo.async_rollouts` the
sampling moves into a worker process and runs one step ahead: while the trainer updates on
rollout k, the worker samples rollout k+1, so a step costs about max(sampling, training)
instead of their sum -- less whatever the two slow each other down by. Measured on that VM
(bench/grpo.py, docs/bench-grpo.md run D, Qwen2 policy): 0.54 s a step against 0.90
synchronous with 1 thread and 0.66 with 2.

The price is one step of policy lag, as in PipelineRL / AReaL's one-step off-policy mode:
rollout k+1 is sampled by the weights from before update k. The loss corrects for it -- the
engine records each sampled token's log-prob under the sampling policy (`Rollout.logps`), and the
trainer uses those as pi_old in the clipped importance ratio, so the objective is PPO's on
samples from a known older policy rather than a silent mismatch.

Weights travel through shared memory. The worker's model *is* the shared tensors (no copy per
request); the trainer writes them only while the worker is idle -- after it has received a
rollout and before it sends the next request -- so a worker never samples from half-written
weights. Requests and results are small (token ids, floats) and go over a pipe.

The worker runs on CPU only: a second CUDA context per device and CUDA IPC for the weights are
not built here (the trainer refuses async_rollouts on GPU with a message).
"""
from __future__ import annotations

import multiprocessing.connection
import traceback
from typing import Any

import torch
import torch.multiprocessing as mp

from r1.train.rollout import Rollout, generate_groups, rollout_compiler


def _serve(conn: multiprocessing.connection.Connection, config, shared: dict[str, torch.Tensor], tokenizer,
           threads: int, compile_rows: int) -> None:
    """The worker's loop: ("rollout", kwargs) -> ("ok", Rollout fields) | ("error", traceback).
    compile_rows > 0: decode through a CompiledDecode of that many rows, made once (its graphs
    compile on the first rollout and serve every later one: the weights change in place)."""
    torch.set_num_threads(threads)
    from r1.model import build_model

    try:
        model = build_model(config, dtype=next(iter(shared.values())).dtype)
        model.load_state_dict(shared, assign=True)  # the parameters are the shared tensors themselves
        model.requires_grad_(False)
        compiled = rollout_compiler(model, compile_rows) if compile_rows else None
    except Exception:  # noqa: BLE001 -- reported to the trainer, which raises it
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while True:
        try:
            kind, kwargs = conn.recv()
        except EOFError:  # the trainer is gone (finished, crashed or killed): so are we
            return
        if kind == "stop":
            return
        try:
            with torch.no_grad():
                ro = generate_groups(model, tokenizer, records=[{}] * len(kwargs["prompt_ids"]), logprobs=True,
                                     compiled=compiled, **kwargs)
            conn.send(("ok", ro.state()))
        except Exception:  # noqa: BLE001 -- reported to the trainer, which raises it
            conn.send(("error", traceback.format_exc()))


class RolloutWorkerError(RuntimeError):
    """The rollout worker failed or died; the message carries its traceback."""


class RolloutWorker:
    """One sampling process per trainer (per rank under torchrun).

    submit(...) starts a rollout with the weights as they are now; result() waits for it. Only
    one rollout is in flight at a time, and `submit` copies the current weights into shared
    memory first -- which is safe exactly because nothing is in flight then."""

    def __init__(self, policy: torch.nn.Module, tokenizer, threads: int = 1, compile_rows: int = 0):
        if any(p.device.type != "cpu" for p in policy.parameters()):
            raise ValueError("asynchronous rollouts run the sampler in a CPU process; the policy is on "
                             f"{next(policy.parameters()).device} (use the synchronous path on GPU)")
        self.policy = policy
        state = policy.state_dict()
        # tied weights (one tensor under two names) stay one shared tensor
        by_ptr: dict[int, torch.Tensor] = {}
        self.shared = {k: by_ptr.setdefault(v.data_ptr(), v.detach().clone().share_memory_())
                       for k, v in state.items()}
        ctx = mp.get_context("spawn")  # fork would copy the trainer's threads and locks mid-flight
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, policy.config, self.shared, tokenizer, threads, compile_rows),
                                daemon=True, name="r1-rollout-worker")
        self.proc.start()
        child.close()
        self.pending = False  # a rollout is in flight
        self._expect("ready")

    def _expect(self, want: str) -> Any:
        try:
            kind, payload = self.conn.recv()
        except (EOFError, ConnectionResetError) as e:
            raise RolloutWorkerError(
                f"the rollout worker (pid {self.proc.pid}) died (exit code {self.proc.exitcode}); see its output "
                "above. It is started with multiprocessing's spawn, which re-imports the main script: a script "
                "that trains must keep its top level under `if __name__ == \"__main__\":`") from e
        if kind == "error":
            raise RolloutWorkerError(f"the rollout worker failed:\n{payload}")
        if kind != want:
            raise RolloutWorkerError(f"rollout worker protocol: expected {want!r}, got {kind!r}")
        return payload

    @torch.no_grad()
    def submit(self, **kwargs: Any) -> None:
        """Start sampling (generate_groups' arguments, without model/tokenizer/records) with the
        policy's current weights."""
        if self.pending:
            raise RuntimeError("a rollout is already in flight; call result() first")
        state = self.policy.state_dict()
        for k, v in self.shared.items():
            v.copy_(state[k])
        self.conn.send(("rollout", kwargs))
        self.pending = True

    def result(self, records: list[dict]) -> Rollout:
        """Wait for the rollout in flight; records are the groups' dataset records."""
        if not self.pending:
            raise RuntimeError("no rollout in flight")
        self.pending = False
        return Rollout.from_state(self._expect("ok"), records)

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send(("stop", None))
            except (BrokenPipeError, OSError):
                pass
            self.proc.join(timeout=10)
            if self.proc.is_alive():
                self.proc.kill()
        self.conn.close()


class SampledAhead:
    """The trainer's side of asynchronous rollouts: the worker (started on first use), the prompt
    indices it is sampling (`inflight`), and a rollout sampled ahead but not used yet (`ready`:
    drained before a save, or restored from a checkpoint's rank state)."""

    def __init__(self, policy: torch.nn.Module, tokenizer, records: list[dict], threads: int = 0,
                 compile_rows: int = 0):
        """threads: the worker's torch threads; 0 = half of this process's at start, at least 1.
        While the worker runs, this process keeps the rest (at least 1) and gets its count back
        at close(): the two processes run side by side, and more threads than cores stall
        OpenMP's parallel regions (a 2-thread trainer beside its 1-thread worker on 2 cores:
        0.57 s a step against 0.52 with 1 + 1, docs/bench-grpo.md run K).
        compile_rows: > 0 compiles the worker's decode steps for up to that many rows."""
        self.policy, self.tokenizer, self.records, self.threads = policy, tokenizer, records, threads
        self.compile_rows = compile_rows
        self._own_threads: int | None = None  # this process's thread count before the worker started
        self.worker: RolloutWorker | None = None
        self.inflight: list[int] | None = None
        self.ready: tuple[list[int], Rollout] | None = None

    def submit(self, idx: list[int], **kwargs: Any) -> None:
        """Start sampling prompts `idx` (generate_groups' arguments) with the weights as they are now."""
        if self.worker is None:
            own = torch.get_num_threads()
            threads = self.threads or max(1, own // 2)
            self.worker = RolloutWorker(self.policy, self.tokenizer, threads, self.compile_rows)
            self._own_threads = own
            torch.set_num_threads(max(1, own - threads))
        self.worker.submit(**kwargs)
        self.inflight = idx

    def drain(self) -> None:
        """Wait for the rollout in flight and keep it as `ready`; the worker then sits idle."""
        if self.inflight is not None:
            idx, self.inflight = self.inflight, None
            self.ready = (idx, self.worker.result([self.records[i] for i in idx]))

    def take(self) -> tuple[list[int], Rollout] | None:
        """The rollout sampled ahead (waiting for it if it is in flight), or None if there is none."""
        self.drain()
        out, self.ready = self.ready, None
        return out

    def state(self) -> dict | None:
        """The ready rollout as JSON-able data (drain first), for a checkpoint's rank state."""
        if self.ready is None:
            return None
        idx, ro = self.ready
        return {"idx": idx, "rollout": ro.state()}

    def restore(self, state: dict | None) -> None:
        if state:
            idx = state["idx"]
            self.ready = (idx, Rollout.from_state(state["rollout"], [self.records[i] for i in idx]))

    def close(self) -> None:
        """Stop the worker; a later submit starts a new one."""
        if self.worker is not None:
            self.worker.close()
            self.worker = None
        if self._own_threads is not None:
            torch.set_num_threads(self._own_threads)
            self._own_threads = None

"""Policy: which sequences run in the next step, and how many of their tokens.

Prefill first (new work joins as soon as it fits), decode otherwise -- continuous batching:
sequences join and leave between steps. Prompts longer than the token budget are prefilled in
chunks over several steps. When the cache runs out during decode, the newest running sequence
is preempted: its blocks are freed and it goes back to the front of the queue, to be recomputed
(prompt + what it generated so far) when memory frees up.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from r1.engine.kv_cache import BlockManager
from r1.engine.sequence import Sequence, Status


@dataclass
class Batch:
    seqs: list[Sequence]
    starts: list[int]
    ends: list[int]
    is_prefill: bool


class Scheduler:
    def __init__(self, blocks: BlockManager, max_num_seqs: int, max_num_batched_tokens: int):
        self.blocks, self.max_num_seqs, self.max_tokens = blocks, max_num_seqs, max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self, lookahead: int = 1) -> Batch | None:
        """lookahead = tokens each decoding sequence needs room for (more when speculating)."""
        batch = self._prefill()
        return batch if batch is not None else self._decode(lookahead)

    def _prefill(self) -> Batch | None:
        seqs, starts, ends = [], [], []
        budget = self.max_tokens
        # sequences part-way through a chunked prefill continue first
        for seq in self.running:
            if seq.num_uncomputed > 1 or (seq.num_computed == 0 and seq.num_uncomputed):
                n = min(seq.num_uncomputed, budget)
                if n <= 0:
                    break
                seqs.append(seq), starts.append(seq.num_computed), ends.append(seq.num_computed + n)
                budget -= n
        deferred = []
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            if self.blocks.waits_for_prefix(seq):  # its prefix is being computed: share it next step
                deferred.append(self.waiting.popleft())
                continue
            if not self.blocks.can_allocate(seq):
                break
            self.waiting.popleft()
            self.blocks.allocate(seq)
            seq.status = Status.RUNNING
            if not seq.preemptions:
                seq.num_cached_prompt = seq.num_computed
            self.running.append(seq)
            n = min(seq.num_uncomputed, budget)
            seqs.append(seq), starts.append(seq.num_computed), ends.append(seq.num_computed + n)
            budget -= n
        self.waiting.extendleft(reversed(deferred))
        return Batch(seqs, starts, ends, True) if seqs else None

    def _decode(self, lookahead: int) -> Batch | None:
        ready = []
        for seq in list(self.running):
            if seq.status is not Status.RUNNING:  # preempted below by an older sequence
                continue
            while not self.blocks.can_append(seq, lookahead):
                victim = self.running[-1]
                self.preempt(victim)
                if victim is seq:
                    break
            else:
                self.blocks.append_slots(seq, lookahead)
                ready.append(seq)
        if not ready:
            return None
        return Batch(ready, [s.num_computed for s in ready], [len(s) for s in ready], False)

    def preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.free_seq(seq)
        seq.status = Status.WAITING
        seq.draft = seq.draft_q = None  # its MTP state is recomputed with the rest
        seq.preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)

    def finish(self, seq: Sequence) -> None:
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.blocks.free_seq(seq)
        seq.status = Status.FINISHED

"""Prometheus metrics, one registry per app (two apps in one process never share counters).

Latency histograms are observed by the request handlers; engine gauges and counters are read at
scrape time from the snapshot the engine thread refreshes after each step, so a scrape never
touches the engine itself. Names follow vLLM's (`vllm:time_to_first_token_seconds` ->
`r1_time_to_first_token_seconds`), so existing dashboards need only the prefix changed.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from r1.serve.async_engine import EngineSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_TTFT = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
_ITL = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10)
_E2E = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 240, 480, 960)


class _EngineCollector(Collector):
    def __init__(self, snapshot: Callable[[], EngineSnapshot | None]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator:
        s = self._snapshot() or EngineSnapshot()
        yield GaugeMetricFamily("r1_num_requests_running", "Sequences in the running batch.", value=s.running)
        yield GaugeMetricFamily("r1_num_requests_waiting", "Sequences waiting to be scheduled.", value=s.waiting)
        yield GaugeMetricFamily("r1_kv_cache_usage_ratio", "Fraction of KV-cache blocks in use (1 = full).",
                                value=s.kv_usage)
        yield GaugeMetricFamily("r1_kv_cache_blocks", "KV-cache blocks in total.", value=s.num_blocks)
        yield CounterMetricFamily("r1_prompt_tokens", "Prompt tokens admitted.", value=s.prompt_tokens)
        yield CounterMetricFamily("r1_generation_tokens", "Tokens generated.", value=s.generation_tokens)
        yield CounterMetricFamily("r1_prefix_cache_queries", "Full prompt blocks looked up in the prefix cache.",
                                  value=s.prefix_queries)
        yield CounterMetricFamily("r1_prefix_cache_hits", "Prompt blocks served from the prefix cache.",
                                  value=s.prefix_hits)
        yield CounterMetricFamily("r1_spec_decode_num_draft_tokens", "MTP draft tokens proposed.",
                                  value=s.spec_drafted)
        yield CounterMetricFamily("r1_spec_decode_num_accepted_tokens", "MTP draft tokens accepted.",
                                  value=s.spec_accepted)
        rate = s.spec_accepted / s.spec_drafted if s.spec_drafted else 0.0
        yield GaugeMetricFamily("r1_spec_decode_acceptance_rate", "Accepted / drafted MTP tokens so far.", value=rate)
        yield CounterMetricFamily("r1_num_preemptions", "Sequences preempted for lack of KV blocks.",
                                  value=s.preemptions)


class ServerMetrics:
    def __init__(self, snapshot: Callable[[], EngineSnapshot | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ttft = Histogram("r1_time_to_first_token_seconds", "Arrival to first generated token.",
                              buckets=_TTFT, registry=r)
        self.itl = Histogram("r1_inter_token_latency_seconds", "Time between generated tokens of a request.",
                             buckets=_ITL, registry=r)
        self.e2e = Histogram("r1_e2e_request_latency_seconds", "Arrival to last token.", buckets=_E2E, registry=r)
        self.queue_time = Histogram("r1_request_queue_time_seconds", "Arrival to first scheduled.",
                                    buckets=_TTFT, registry=r)
        self.requests = Counter("r1_requests", "Finished HTTP model requests.", ["endpoint", "status"], registry=r)
        self.finished = Counter("r1_request_success", "Completions by finish reason.", ["finish_reason"], registry=r)
        self.cached_tokens = Counter("r1_prefix_cache_hit_tokens", "Prompt tokens served from the prefix cache.",
                                     registry=r)
        self.guard_flags = Counter("r1_guard_flagged", "Prompts or outputs the guard refused.", ["stage"], registry=r)
        r.register(_EngineCollector(snapshot))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestTimer:
    """Per-request latency bookkeeping: feed it every delta's token count as it arrives."""

    def __init__(self, metrics: ServerMetrics, arrival: float) -> None:
        self.m, self.arrival = metrics, arrival
        self.first: float | None = None
        self.last: float | None = None

    def tokens(self, n: int, now: float) -> None:
        if n <= 0:
            return
        if self.first is None:
            self.first = now
            self.m.ttft.observe(now - self.arrival)
        elif self.last is not None:
            # several tokens can arrive in one delta (speculative decoding): spread the gap over them
            gap = (now - self.last) / n
            for _ in range(n):
                self.m.itl.observe(gap)
        self.last = now

    def done(self, now: float) -> None:
        self.m.e2e.observe(now - self.arrival)

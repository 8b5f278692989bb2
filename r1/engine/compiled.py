"""Compiled decode: the model's decode step through `torch.compile` (inductor), on CPU or GPU.

Why: at batch 1 a decode step is a matrix-vector product per weight matrix plus a few hundred
small ops. Eagerly, on the 2-core CPU this project is measured on, both go badly: `F.linear`
with one row streams fp32 weights at ~16 GB/s of the ~37-43 GB/s the memory copies at (no
faster with 2 threads than with 1), and every small op pays its dispatch. Inductor fuses the small ops and,
given the matvec written as a multiply-and-sum (`gemv.py`), emits a vectorized, multi-threaded
reduction that streams the weights at 30-42 GB/s (fp32, bf16) and reads int8 weights directly.
With several rows the linears are matrix products that run as well eagerly, so the engine
compiles the single-row step only: the latency case of one user, where it matters.

What is compiled is the model's own forward, unchanged, over a `DeferredStep` cache view: each
row attends to its cached past plus its own new K/V, and the new entries come back as outputs
that the caller scatters into the paged store after the graph (a plain scatter into a large
buffer is what a functional graph would have to copy). Where a step attends in place (the
native paged kernel: GQA models, CPU, one thread), the graph is over an `InPlaceStep` instead:
the kernel is a custom op that declares the store it writes, and the cache's store is written
inside the graph. The cached length is dynamic, so one graph serves every step. Steps with more
rows than `max_rows` (the engine: 1; GRPO's rollouts: all of them), prefill chunks and
speculative verification run eagerly, and so do models the graph cannot hold in one piece
(`compile_blocker`: packed int4/fp8/GGUF layouts, MoE layers with many experts that could not
be banked). A MoE step gathers only the routed experts' weights (`EngineMoE.forward_gathered`).

The eager model is the reference; tests hold the compiled step to it (same greedy tokens,
logits within float tolerance).
"""
from __future__ import annotations

import hashlib
import os
import types
import weakref
from pathlib import Path

import torch
import torch.fx.experimental._config as fx_config
import torch.nn.functional as F
from torch import nn

from r1.engine.kv_cache import DeferredStep, InPlaceStep, PagedKVCache, PagedStep
from r1.engine.linear import use_engine_linears
from r1.engine.moe import bank_all_experts, bankable, use_engine_moe
from r1.engine.quant_linear import QuantLinear
from r1.model.base import CausalLM
from r1.model.deepseek import MoE
from r1.model.dense import GQAAttention
from r1.model.layers import PAD_POS


MAX_COMPILED_EXPERTS = 16


def compile_blocker(model: nn.Module) -> str | None:
    """None if the compiled decode can run this model, else why not (the engine then stays eager)."""
    for name, m in model.named_modules():
        if isinstance(m, QuantLinear) and not m.in_graph:
            return f"{name} is {type(m).__name__}: no compiled kernel for its packed layout"
        if (isinstance(m, MoE) and name.startswith("model.layers.") and m.n_experts > MAX_COMPILED_EXPERTS
                and not bankable(m)):
            # Compiled, a MoE whose experts could not be banked (r1/engine/moe.py: not uniform
            # float or int8 linears) runs every expert on every token (MoE.forward_all_experts: the
            # routed loop's shapes depend on the data); with many experts that reads far more weights.
            return (f"{name} has {m.n_experts} routed experts that could not be banked "
                    f"(compiled MoE would run them all; at most {MAX_COMPILED_EXPERTS})")
    return None


def compile_decode(model: CausalLM, max_rows: int = 1) -> tuple[CompiledDecode | None, str | None]:
    """(a CompiledDecode of the model for steps of up to max_rows rows, None), or (None, why not)
    where compile_blocker refuses the model: what LLMEngine(compile=True) and GRPO's
    compile_rollouts both make."""
    why = compile_blocker(model)
    return (None, why) if why else (CompiledDecode(model, max_rows), None)


def _decode_forward(model: CausalLM, cache: PagedKVCache, ids: torch.Tensor, pos: torch.Tensor,
                    past_index: torch.Tensor, past_key_pos: torch.Tensor, logits_at: torch.Tensor):
    step = DeferredStep(cache, past_index, past_key_pos)
    logits = model(ids, positions=pos, cache=step, logits_at=logits_at)
    return logits, step.new


def _in_place_forward(model: CausalLM, cache: PagedKVCache, ids: torch.Tensor, pos: torch.Tensor,
                      slots: torch.Tensor, table: torch.Tensor, lens: torch.Tensor, logits_at: torch.Tensor):
    return model(ids, positions=pos, cache=InPlaceStep(cache, slots, table, lens), logits_at=logits_at)


def inductor_cache_dir(base: Path | None = None) -> Path:
    """Where r1's compiled graphs are cached: one folder per torch version, dispatch level and CPU,
    under `base` (default ~/.cache/r1/inductor).

    Inductor's own cache (/tmp/torchinductor_$USER) is shared by every process whatever its
    ATEN_CPU_CAPABILITY, and torch 2.13 hands a graph compiled at one dispatch level to a process at
    another: after an AVX2-dispatch run (`ATEN_CPU_CAPABILITY=avx2`) of the turbo profile, the next
    default run on the same AVX-512 machine corrupted the heap after its first token ("corrupted
    size vs. prev_size", or a segfault), and a fresh cache or TORCHINDUCTOR_FX_GRAPH_CACHE=0 cured
    it (tests/test_turbo_dispatch.py). Keyed folders keep each level's artifacts apart, and under
    ~/.cache they outlast a cleaned /tmp."""
    from r1.engine.native import cache_root, cpu_identity, dispatch_level

    level = dispatch_level()
    key = hashlib.sha256(f"{torch.__version__}\0{level}\0{cpu_identity()}".encode()).hexdigest()[:12]
    base = base if base is not None else cache_root().parent / "inductor"
    return base / f"r1-{torch.__version__.replace('+', '_')}-{level.lower()}-{key}"


def use_r1_inductor_cache() -> None:
    """Point inductor at inductor_cache_dir(), inside the user's TORCHINDUCTOR_CACHE_DIR where one
    was chosen (a shared folder would bring the crash back). Inductor reads the variable whenever it
    looks for its cache, so this holds from the next compile. Inductor writes its own default into
    the variable the first time it looks: that value is not taken for the user's choice."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    user = None if not chosen or os.path.abspath(chosen) == os.path.abspath(default_cache_dir()) else Path(chosen)
    if user is not None and user.name.startswith("r1-"):
        user = user.parent  # keyed already: by an earlier call, or a parent process at its own level
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(inductor_cache_dir(user))


def _private(fn):
    """A private copy of fn: dynamo keeps compiled graphs (and its recompile limit) per code
    object, so each CompiledDecode's graphs stay apart from any other's."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


class CompiledDecode:
    """Runs plain decode steps (one new token per row, at most `max_rows` rows) compiled.
    Holds no cache of its own, so one instance can serve engine after engine over the same model
    (`LLMEngine(..., compiled=)`): the graphs compile once."""

    def __init__(self, model: CausalLM, max_rows: int = 1, backend: str = "inductor"):
        """max_rows: the most rows a compiled step takes. The engine compiles only the single-row
        step: with several rows the linears are matrix products that run as fast eagerly; a float
        SmolLM2 gained 4% at 16 rows. GRPO's rollouts (grpo.compile_rollouts) compile every row
        count: their tiny policies' steps are mostly per-op overhead. There, on a 32-row rollout of
        the benchmark's Qwen2 at one thread, the gather + SDPA graph (0.71 s) lost to the eager
        kernel path (0.58 s), and the in-place graph (`_in_place_forward`) won (measured in
        docs/bench-grpo.md). Quantized linears keep rows > 1 eager in any case (fbgemm's kernel
        is not callable from a graph).
        backend: torch.compile's; "eager" traces the same graph without generating code (tests)."""
        use_r1_inductor_cache()
        self.model = model
        quantized = any(isinstance(m, QuantLinear) for m in model.modules())
        self.max_rows = 1 if quantized else max_rows
        use_engine_linears(model)  # single-row linears take the gemv form when compiled
        use_engine_moe(model)
        bank_all_experts(model)  # MoE steps gather only the routed experts' weights (moe.py)
        self._fn = torch.compile(_private(_decode_forward), dynamic=True, backend=backend)
        # Steps that attend in place (the native kernel: GQA models, CPU, one thread) get a graph of
        # their own that calls the kernel as a custom op and writes the cache itself: no gathered
        # copy of the past. On the GRPO benchmark's 32-row rollouts that is the graph that beats
        # the eager kernel path (the gather + SDPA graph did not: see __init__'s max_rows).
        self.in_place_graph = all(isinstance(layer.self_attn, GQAAttention) for layer in model.model.layers)
        self._fn_in_place = torch.compile(_private(_in_place_forward), dynamic=True, backend=backend)
        # per cache (engine): which graphs ((one row?, in place?)) ran with full guards
        self._checked: weakref.WeakKeyDictionary[PagedKVCache, set[tuple[bool, bool]]] = weakref.WeakKeyDictionary()

    def accepts(self, tokens: list[list[int]], return_hidden: bool) -> bool:
        return not return_hidden and len(tokens) <= self.max_rows and all(len(t) == 1 for t in tokens)

    def __call__(self, step: PagedStep, ids: torch.Tensor, pos: torch.Tensor,
                 logits_at: torch.Tensor) -> torch.Tensor:
        """The decode step build_step described (ids, pos (b, 1)) -> logits (b, 1, V)."""
        in_place = step.in_place if self.in_place_graph else None
        key = (ids.shape[0] == 1, in_place is not None)
        if in_place is not None:
            table, lens = in_place
            if table.shape[1] < 2:  # keep the block-table width off 1, which compilers specialize
                table = F.pad(table, (0, 2 - table.shape[1]))  # block 0, never read: lens bounds each row
            args = (self.model, step.cache, ids, pos, step.slots, table, lens, logits_at)
            return self._run(self._fn_in_place, args, step.cache, key)
        # build_step's view has each row's new token at column pos among t = max(pos) + 1
        # columns; the past is every column before the last with a key position below pos.
        index, key_pos = step.index[:, :-1], step.key_pos[:, :-1]  # (b, t - 1)
        key_pos = torch.where(key_pos < pos, key_pos, PAD_POS)
        if index.shape[1] < 2:  # keep the cached length off 0 and 1, which compilers specialize
            w = 2 - index.shape[1]
            index = F.pad(index, (0, w))
            key_pos = F.pad(key_pos, (0, w), value=PAD_POS)
        # Standard strides either way: the graph guards on them, and a padded first step (a
        # 1-token prompt) would otherwise leave a guard that the sliced later steps fail.
        # (.contiguous() would keep a one-row slice's stride: a size-1 dim counts as contiguous.)
        index = index.clone(memory_format=torch.contiguous_format)
        key_pos = key_pos.clone(memory_format=torch.contiguous_format)
        logits, new = self._run(self._fn, (self.model, step.cache, ids, pos, index, key_pos, logits_at), step.cache,
                                key)
        slots = step.slots
        for (layer, name), stored in new.items():  # encoded in the graph, rows in slot order
            step.cache.put(layer, name, stored, slots)
        return logits

    def _run(self, fn, args: tuple, cache: PagedKVCache, key: tuple[bool, bool]):
        """fn(*args) -- one of the compiled functions -- with guards checked once per graph and cache.

        Guards (~1 ms a step for a 30-layer model: one check per parameter and cached tensor)
        are evaluated on the first step of each graph (key: one row or several, in place or not)
        for each cache; after that the step differs only in the sizes of b and t, which the graph
        is general in, so dynamo may skip the guards that cannot tell graphs apart. (In torch 2.13
        that still runs every tensor's match guard -- they count as distinguishing -- and skips
        the rest; on the DeepSeek-arch benchmark model the two modes measured alike, 8.3-8.9 vs
        8.7 ms a step, and what cut its guard time was handing the graph fewer tensors: banked
        experts, moe.py.) This assumes what holds while an engine lives: its cache's tensors stay
        the same and the model's parameters keep their shapes, dtypes and devices (values may
        change in place: GRPO's updates)."""
        seen = self._checked.setdefault(cache, set())
        if key in seen:
            with torch.compiler.set_stance(skip_guard_eval_unsafe=True):
                return fn(*args)
        # Duck shaping would assume rows == cached length whenever they first coincide, and
        # recompile (tens of seconds) when they part; sizes here are unrelated.
        with fx_config.patch(use_duck_shape=False):
            out = fn(*args)
        seen.add(key)
        return out

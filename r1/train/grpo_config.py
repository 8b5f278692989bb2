"""GRPO's configuration: the algorithm's knobs (TRL's names and meanings), the prompt data, the
reward names the config may list, and how a prompt is rendered for the policy. The trainer that
runs them is r1/train/grpo.py, which re-exports all of this."""
from __future__ import annotations

from dataclasses import dataclass, field

from r1 import rewards as R
from r1.tasks.datasets import rl_records
from r1.train.config import DistConfig, ModelSpec, OptimConfig, RunConfig, TrainConfigError
from r1.train.grpo_loss import LOSS_TYPES, SCALE_REWARDS

MODES = ("r1_zero", "r1")


@dataclass(frozen=True)
class RewardContext:
    """What the reward factories need to know about the run."""
    style: str  # "r1_zero" | "chat"
    think_in_prompt: bool
    max_completion_length: int
    language: str


def _code_reward(binary: bool):
    def make(c: RewardContext):
        from r1.rewards.code import make_code_reward  # imports the sandbox: only when a code reward is asked for

        return make_code_reward(binary=binary, think_in_prompt=c.think_in_prompt)
    return make


# grpo.reward_funcs name -> factory; the names are the keys (REWARDS)
REWARD_FACTORIES = {
    "accuracy": lambda c: R.make_accuracy_reward(c.think_in_prompt),
    "format": lambda c: R.make_format_reward(c.style, c.think_in_prompt),
    "tag_count": lambda c: R.make_tag_count_reward(c.style, c.think_in_prompt),
    "language": lambda c: R.make_language_reward(c.language, c.think_in_prompt),
    "overlong": lambda c: R.make_soft_overlong_reward(c.max_completion_length, max(1, c.max_completion_length // 4)),
    "repetition": lambda c: R.make_repetition_penalty(),
    # code family: fraction of hidden tests passed / 1 only when all pass (r1.rewards.code)
    "code": _code_reward(binary=False),
    "code_binary": _code_reward(binary=True),
}
REWARDS = tuple(REWARD_FACTORIES)


@dataclass
class GRPOConfig:
    """The algorithm's knobs, named and meaning as in TRL's GRPOConfig."""
    num_generations: int = 8  # G: completions per prompt
    per_device_train_batch_size: int = 8  # completions per forward/backward micro-batch
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step; a rank's generation
    # batch is per_device_train_batch_size * gradient_accumulation_steps completions
    num_iterations: int = 1  # mu: policy updates per generation batch
    beta: float = 0.0  # KL coefficient; 0 = no reference model is loaded at all
    epsilon: float = 0.2  # lower clip: ratio >= 1 - epsilon
    epsilon_high: float | None = None  # upper clip (DAPO clip-higher, 0.28); None = epsilon
    loss_type: str = "dapo"  # grpo | bnpo | dr_grpo | dapo (see grpo_loss.py)
    scale_rewards: str = "group"  # group | batch | none: what the centered reward is divided by
    mask_truncated_completions: bool = False  # DAPO overlong filtering: no loss on cut-off samples
    max_prompt_length: int = 512  # longer prompts keep their last tokens (as TRL)
    max_completion_length: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    dynamic_sampling: bool = False  # DAPO §3.2: drop groups with all-equal rewards, refill
    max_sampling_rounds: int = 4  # draws per step at most when refilling
    reward_funcs: list[str] = field(default_factory=lambda: ["accuracy", "format"])
    reward_weights: list[float] | None = None  # None = 1.0 each
    # Sample the next step's groups in a worker process while this step trains (CPU only): a step
    # then costs about max(sampling, training) instead of their sum, at one step of policy lag,
    # which the clipped ratio corrects with the sampling policy's own log-probs (rollout_worker.py).
    async_rollouts: bool = False
    rollout_threads: int = 0  # the worker's torch threads; 0 = half of this process's, at least 1
    # Decode steps of the rollouts through torch.compile (r1/engine/compiled.py), every row count,
    # with the native paged kernel inside the graph where it applies (GQA, CPU, one thread: the
    # async worker). A tiny policy's decode step is mostly per-op overhead, which the graph
    # removes; the price is compiling on the first rollout (~40 s cold on the 2-core VM, seconds
    # from inductor's cache). Measured in docs/bench-grpo.md (run K).
    compile_rollouts: bool = False
    # The training forward runs a micro-batch's completions sorted by length in this many passes,
    # each padded to its own longest row (1 = one pass padded to the longest of all). Measured
    # on bench/grpo.py's Qwen2 policy (one fixed rollout of 32 completions, max_completion_length
    # 192, 1 thread): a training step took 0.53 s with 1, 0.48 with 2, 0.45-0.46 with 4, 6 or 8.
    length_buckets: int = 4

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise TrainConfigError(msg)
        need(self.num_generations >= 2, f"grpo.num_generations must be >= 2 (advantages compare samples of one "
             f"prompt), got {self.num_generations}")
        need(self.per_device_train_batch_size >= 1 and self.gradient_accumulation_steps >= 1,
             "grpo.per_device_train_batch_size and grpo.gradient_accumulation_steps must be >= 1")
        need(self.generation_batch_size % self.num_generations == 0,
             f"a rank's generation batch (per_device_train_batch_size x gradient_accumulation_steps = "
             f"{self.generation_batch_size}) must be a multiple of num_generations={self.num_generations}, so every "
             "rank holds whole groups")
        need(self.num_iterations >= 1, f"grpo.num_iterations (mu) must be >= 1, got {self.num_iterations}")
        need(self.beta >= 0, f"grpo.beta must be >= 0, got {self.beta}")
        need(0 < self.epsilon < 1, f"grpo.epsilon must be in (0, 1), got {self.epsilon}")
        need(self.epsilon_high is None or self.epsilon_high > 0, "grpo.epsilon_high must be > 0 (or null)")
        need(self.loss_type in LOSS_TYPES, f"grpo.loss_type={self.loss_type!r}: choose one of {', '.join(LOSS_TYPES)}")
        need(self.scale_rewards in SCALE_REWARDS,
             f"grpo.scale_rewards={self.scale_rewards!r}: choose one of {', '.join(SCALE_REWARDS)}")
        need(self.max_prompt_length >= 1 and self.max_completion_length >= 1,
             "grpo.max_prompt_length and grpo.max_completion_length must be >= 1")
        need(self.temperature > 0, f"grpo.temperature must be > 0 (GRPO needs diverse samples), got {self.temperature}")
        need(0 < self.top_p <= 1 and self.top_k >= 0, "grpo.top_p must be in (0, 1] and grpo.top_k >= 0")
        need(self.max_sampling_rounds >= 1, "grpo.max_sampling_rounds must be >= 1")
        need(not (self.async_rollouts and self.dynamic_sampling),
             "grpo.async_rollouts samples one draw ahead, and dynamic_sampling decides on further draws only "
             "after scoring: use one of them")
        need(self.length_buckets >= 1, f"grpo.length_buckets must be >= 1, got {self.length_buckets}")
        need(self.rollout_threads >= 0, f"grpo.rollout_threads must be >= 0 (0 = auto), got {self.rollout_threads}")
        need(bool(self.reward_funcs), "grpo.reward_funcs is empty; name at least one of " + ", ".join(REWARDS))
        bad = [r for r in self.reward_funcs if r not in REWARDS]
        need(not bad, f"grpo.reward_funcs: unknown {bad}; choose from {', '.join(REWARDS)}")
        need(self.reward_weights is None or len(self.reward_weights) == len(self.reward_funcs),
             f"grpo.reward_weights has {len(self.reward_weights or [])} entries for "
             f"{len(self.reward_funcs)} reward_funcs")

    @property
    def generation_batch_size(self) -> int:
        """Completions one rank samples per step."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    @property
    def prompts_per_rank(self) -> int:
        return self.generation_batch_size // self.num_generations


@dataclass
class GRPODataConfig:
    """Where prompts come from: a task family of r1.tasks, rendered for the mode."""
    mode: str = "r1_zero"  # r1_zero | r1
    task: str = "arithmetic"
    difficulty: int = 1
    tasks: list[str] = field(default_factory=list)  # several families, interleaved (replaces `task`)
    difficulties: list[int] = field(default_factory=list)  # cycled through (replaces `difficulty`)
    p_canonical: float = 1.0  # share of prompts in the generator's own words; the rest paraphrased
    num_prompts: int = 2048  # per task
    seed: int = 0  # problem generation seed (the order is shuffled by run.seed)
    language: str = "en"  # target language of the language-consistency reward

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise TrainConfigError(f"data.mode={self.mode!r}: choose r1_zero (base model, R1-Zero template) "
                                   "or r1 (chat template)")
        if self.num_prompts < 1 or self.difficulty < 1 or any(d < 1 for d in self.difficulties):
            raise TrainConfigError("data.num_prompts and data.difficulty / data.difficulties must be >= 1")
        if not 0 <= self.p_canonical <= 1:
            raise TrainConfigError(f"data.p_canonical must be in [0, 1], got {self.p_canonical}")

    def records(self) -> list[dict]:
        """The prompt records, task by task interleaved (so any batch mixes the families)."""
        style = "r1_zero" if self.mode == "r1_zero" else "chat"
        per_task = [rl_records(t, self.num_prompts, seed=self.seed, split="train",
                               difficulty=tuple(self.difficulties) or self.difficulty, style=style,
                               p_canonical=self.p_canonical) for t in (self.tasks or [self.task])]
        return [r for group in zip(*per_task) for r in group]


def _grpo_optim() -> OptimConfig:
    # TRL's defaults for GRPO: lr 1e-6, no weight decay, Adam betas (0.9, 0.999), grad norm 1.0
    return OptimConfig(lr=1e-6, warmup_steps=0, schedule="constant", weight_decay=0.0, beta2=0.999)


@dataclass
class GRPOTrainConfig:
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/grpo"))
    model: ModelSpec = field(default_factory=ModelSpec)
    optim: OptimConfig = field(default_factory=_grpo_optim)
    dist: DistConfig = field(default_factory=DistConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    data: GRPODataConfig = field(default_factory=GRPODataConfig)


# ------------------------------------------------------------------------------ rewards and prompts
def build_rewards(names: list[str], mode: str, think_in_prompt: bool, max_completion_length: int,
                  language: str = "en") -> list:
    ctx = RewardContext("r1_zero" if mode == "r1_zero" else "chat", think_in_prompt, max_completion_length, language)
    return [REWARD_FACTORIES[n](ctx) for n in names]


def render_prompt(record: dict, mode: str, tokenizer) -> str:
    """The text the policy continues: R1-Zero template as is, or the chat template's rendering."""
    if mode == "r1_zero":
        return record["prompt"]
    if not tokenizer.chat_templates:
        raise TrainConfigError("data.mode=r1 needs a tokenizer with a chat template; use data.mode=r1_zero for a "
                               "base model without one")
    return tokenizer.apply_chat_template([{"role": "user", "content": record["prompt"]}], add_generation_prompt=True)

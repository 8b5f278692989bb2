"""`r1 pipeline RECIPE`: a multi-stage training recipe, each stage a trainer call whose inputs,
config, outputs, time and held-out evaluation are recorded, resumable stage by stage.

A recipe (recipes/*.yaml):

    name: r1-zero
    out_dir: runs/r1-zero              # default runs/<name>
    requires: []                       # recipes (same folder) whose stages this one reads
    seed: 0
    eval: {k: 8, limit: 64, template: r1_zero, sets: [{task: arithmetic, difficulty: 2}]}
    stages:
      - {name: base, kind: pretrain, config: {...}}
      - {name: zero, kind: grpo, config: {model: {init_from: "@base"}, ...}}

Stage kinds are data (KINDS): pretrain, sft, grpo (the trainers of `r1 train`), rejection
(rejection sampling into SFT records), mix (SFT records from generated solutions, files and chat
examples), eval (score any model), export (ship a model with its model card, e.g. models/r1-tiny). A string "@stage" in a config is that stage's output (its
model folder, records file or eval file), "@stage/sub/path" a path inside its folder, and
"@recipe:stage" a stage of a required recipe.

Resuming: a stage with `stage.json` saying done, under the same resolved config, is skipped; an
interrupted training stage continues from its newest checkpoint. Every model-producing stage is
then evaluated on the recipe's held-out suite (pass@1 over k at temperature 0.6, cons@k, format
and language rates, reasoning rate and the accuracy with and without reasoning), written to
STAGE/eval.json; `r1 pipeline --report` (r1.train.results) collects them into docs/results.md.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1.fileio import atomic_write_text
from r1.train.config import TrainConfigError, from_dict, load_yaml, merge

# kind -> (module, what the stage's primary output is, relative to its folder)
KINDS: dict[str, tuple[str, str]] = {
    "pretrain": ("r1.train.pretrain", "model"),
    "sft": ("r1.train.sft", "model"),
    "grpo": ("r1.train.grpo", "model"),
    "rejection": ("r1.train.rejection", "records.jsonl"),
    "mix": ("r1.train.pipeline_data", "records.jsonl"),
    "eval": ("r1.train.pipeline", "eval.json"),
    "export": ("r1.train.export", "shipped"),  # a link-free record; the model goes to config.to
}
TRAINING_KINDS = ("pretrain", "sft", "grpo")
STAGE_FILE = "stage.json"


@dataclass
class EvalSet:
    task: str
    difficulty: int = 1
    p_canonical: float = 1.0  # < 1: some questions asked in people's words (r1.tasks.phrasing)
    turns: int = 1  # > 1: each question is the last turn of a chat of this many (r1.tasks.conversation)
    thinking: bool = True  # False: asked in the no-thinking mode (the think block closed empty)

    def __post_init__(self) -> None:
        if self.turns < 1:
            raise TrainConfigError(f"eval set {self.task}: turns must be >= 1, got {self.turns}")

    @property
    def key(self) -> str:
        """The set's name in reports: task/d1, then /phrased, /3turn, /nothink as they apply."""
        return (f"{self.task}/d{self.difficulty}" + ("" if self.p_canonical >= 1 else "/phrased")
                + ("" if self.turns == 1 else f"/{self.turns}turn") + ("" if self.thinking else "/nothink"))


@dataclass
class EvalSuite:
    """The held-out evaluation every stage's model gets (the R1 paper's protocol by default)."""
    sets: list[EvalSet] = field(default_factory=lambda: [EvalSet("arithmetic")])
    k: int = 8
    limit: int = 64  # problems per set (test split)
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 512
    template: str = "chat"
    seed: int = 0
    batch_size: int = 32  # prompts per engine call (x k sequences)

    def __post_init__(self) -> None:
        if self.k < 1 or self.limit < 1:
            raise TrainConfigError("eval.k and eval.limit must be >= 1")
        if not self.sets:
            raise TrainConfigError("eval.sets is empty; name at least one {task, difficulty}")


@dataclass
class StageSpec:
    name: str
    kind: str
    config: dict = field(default_factory=dict)
    eval: Any = True  # False: no held-out eval; a dict: overrides of the recipe's suite

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TrainConfigError(f"stage {self.name!r}: kind={self.kind!r}; choose one of {', '.join(KINDS)}")
        if not self.name or "/" in self.name or ":" in self.name or self.name.startswith("@"):
            raise TrainConfigError(f"stage name {self.name!r} must be non-empty without '/', ':' or a leading '@'")


@dataclass
class Recipe:
    name: str
    stages: list[StageSpec]
    out_dir: str = ""
    requires: list[str] = field(default_factory=list)
    seed: int = 0
    eval: EvalSuite = field(default_factory=EvalSuite)
    description: str = ""
    path: str = ""  # the YAML it came from (set by load_recipe)

    def __post_init__(self) -> None:
        self.out_dir = self.out_dir or f"runs/{self.name}"
        names = [s.name for s in self.stages]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise TrainConfigError(f"recipe {self.name}: stage names must be unique, repeated: {', '.join(sorted(dup))}")
        if not self.stages:
            raise TrainConfigError(f"recipe {self.name}: no stages")


def load_recipe(path: str | Path, out_dir: str | None = None, overrides: dict | None = None) -> Recipe:
    data = merge(load_yaml(path), overrides or {})
    if out_dir:
        data["out_dir"] = out_dir
    data.setdefault("name", Path(path).stem)
    recipe = from_dict(Recipe, {**data, "path": str(path)})
    return recipe


def recipe_path(name: str, near: str | Path) -> Path:
    """A required recipe by name: recipes/<name>.yaml next to the requiring one."""
    p = Path(near).parent / f"{name}.yaml"
    if not p.is_file():
        raise TrainConfigError(f"required recipe {name!r}: no {p}")
    return p


# ------------------------------------------------------------------------------ references
class Resolver:
    """Turns "@stage", "@stage/sub" and "@recipe:stage" strings into paths."""

    def __init__(self, recipe: Recipe, others: dict[str, Recipe]):
        self.recipe, self.others = recipe, others
        self.used: set[Path] = set()  # stage folders referenced since the last reset

    def inputs_fingerprint(self) -> dict[str, Any]:
        """When each referenced stage last finished: a stage whose input was produced again
        must run again, even though its own config text is unchanged."""
        out = {}
        for folder in sorted(self.used):
            state = folder / STAGE_FILE
            out[str(folder)] = json.loads(state.read_text()).get("started") if state.is_file() else None
        self.used = set()
        return out

    def stage_dir(self, recipe: Recipe, stage: str) -> Path:
        if stage not in {s.name for s in recipe.stages}:
            raise TrainConfigError(f"reference to unknown stage {stage!r} of recipe {recipe.name} "
                                   f"(stages: {', '.join(s.name for s in recipe.stages)})")
        return Path(recipe.out_dir) / stage

    def path(self, ref: str) -> Path:
        body = ref[1:]
        recipe = self.recipe
        if ":" in body:
            rname, body = body.split(":", 1)
            if rname not in self.others:
                raise TrainConfigError(f"{ref}: recipe {rname!r} is not in this recipe's `requires`")
            recipe = self.others[rname]
        stage, _, sub = body.partition("/")
        folder = self.stage_dir(recipe, stage)
        self.used.add(folder)
        if sub:
            return folder / sub
        kind = next(s.kind for s in recipe.stages if s.name == stage)
        return folder / KINDS[kind][1]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("@"):
            return str(self.path(value))
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ evaluation
def evaluate(model: str | Path, suite: EvalSuite, out: Path | None = None, backend=None) -> dict[str, Any]:
    """Score `model` on every set of the suite; returns (and writes to `out`) per-set metrics
    and their problem-weighted means under "all"."""
    import random

    from r1.eval import EngineBackend, EvalConfig, run_eval
    from r1.tasks import generate_many, get_task
    from r1.tasks.conversation import in_conversation
    from r1.tasks.phrasing import random_phrasing

    backend = backend or EngineBackend(model, batch_size=suite.batch_size * suite.k)
    t0 = time.time()
    per_set, samples, per_problem = {}, {}, {}
    for s in suite.sets:
        ecfg = EvalConfig(task=s.task, k=suite.k, limit=suite.limit, seed=suite.seed, split="test",
                          difficulty=s.difficulty, temperature=suite.temperature, top_p=suite.top_p,
                          max_tokens=suite.max_tokens, template=suite.template, batch_size=suite.batch_size)
        problems = generate_many(get_task(s.task), suite.limit, seed=suite.seed, split="test", difficulty=s.difficulty)
        if s.p_canonical < 1:
            rng = random.Random(f"eval:{s.task}:{suite.seed}")
            problems = [random_phrasing(p, rng, s.p_canonical) for p in problems]
        if s.turns > 1:
            rng = random.Random(f"eval:chat:{s.task}:{suite.seed}")
            problems = [in_conversation(p, rng, s.turns, suite.seed * 100_003 + i) for i, p in enumerate(problems)]
        if not s.thinking:  # asked as a chat user would, without R1's reasoning instruction
            problems = [dataclasses.replace(p, meta={**p.meta, "thinking": False, "instruction": False})
                        for p in problems]
        result = run_eval(backend, ecfg, problems=problems)
        key = s.key
        per_set[key] = result["metrics"]
        # problem id -> pass@1, so two models evaluated on the same problems compare pair by pair
        per_problem[key] = {r["id"]: r["pass@1"] for r in result["problems"]}
        samples[key] = [{"question": r["question"], "truth": r["truth"], "text": r["samples"][0]["text"],
                         "correct": r["samples"][0]["correct"]} for r in result["problems"][:3]]
    doc = {"model": str(model), "suite": dataclasses.asdict(suite), "all": weighted_means(per_set),
           "sets": per_set, "examples": samples, "per_problem": per_problem, "elapsed_s": round(time.time() - t0, 1)}
    if out is not None:
        atomic_write_text(out, json.dumps(doc, indent=1))
    return doc


def weighted_means(per_set: dict[str, dict]) -> dict[str, float | None]:
    keys = ("pass@1", "cons@k", "format_rate", "language_consistency_rate", "mean_response_tokens",
            "reasoning_rate", "accuracy_reasoned", "accuracy_direct", "misread_rate", "leak_rate", "truncation_rate")
    out: dict[str, float | None] = {}
    for k in keys:
        pairs = [(m[k], m["n_samples"]) for m in per_set.values() if m.get(k) is not None]
        out[k] = sum(v * w for v, w in pairs) / sum(w for _, w in pairs) if pairs else None
    return out


# ------------------------------------------------------------------------------ running stages
def _run_training(kind: str, config: dict, folder: Path, seed: int) -> None:
    import importlib

    mod = importlib.import_module(KINDS[kind][0])
    run = {"out_dir": str(folder), "progress": False, **config.get("run", {})}
    run.setdefault("seed", seed)
    if (folder / "checkpoints").is_dir():
        run["resume"] = True  # an interrupted stage continues from its newest complete checkpoint
    mod.train(from_dict(mod.CONFIG, {**config, "run": run}))


def _run_stage(spec: StageSpec, config: dict, folder: Path, recipe: Recipe, done: list[dict],
               required_s: float) -> None:
    if spec.kind in TRAINING_KINDS:
        _run_training(spec.kind, config, folder, recipe.seed)
    elif spec.kind == "rejection":
        from r1.train.rejection import RejectionConfig, run

        run(from_dict(RejectionConfig, {**config, "out_dir": str(folder)}))
    elif spec.kind == "mix":
        from r1.train.pipeline_data import MixConfig, build_mix

        build_mix(from_dict(MixConfig, config), folder / "records.jsonl")
    elif spec.kind == "eval":
        cfg = dict(config)
        model = cfg.pop("model", None)
        if not model:
            raise TrainConfigError(f"stage {spec.name}: an eval stage needs config.model")
        suite = from_dict(EvalSuite, merge(dataclasses.asdict(recipe.eval), cfg))
        evaluate(model, suite, folder / "eval.json")
    elif spec.kind == "export":
        from r1.train.export import ExportConfig, export

        dst = export(from_dict(ExportConfig, config), done, recipe.path, required_s)
        atomic_write_text(folder / "shipped", str(dst) + "\n")


def _suite_for(spec: StageSpec, recipe: Recipe) -> EvalSuite | None:
    if spec.kind not in TRAINING_KINDS or spec.eval is False:
        return None
    extra = spec.eval if isinstance(spec.eval, dict) else {}
    return from_dict(EvalSuite, merge(dataclasses.asdict(recipe.eval), extra))


def run_recipe(recipe: Recipe, only: list[str] | None = None, force: list[str] | None = None,
               log=print, _stack: tuple[str, ...] = (), _done: set[str] | None = None) -> dict[str, Any]:
    """Run (or resume) every stage of `recipe` and the recipes it requires; returns the
    pipeline record also written to OUT_DIR/pipeline.json."""
    done = _done if _done is not None else set()
    stack = (*_stack, recipe.name)
    others: dict[str, Recipe] = {}
    for name in recipe.requires:
        if name in stack:
            raise TrainConfigError(f"recipes require each other in a cycle: {' -> '.join((*stack, name))}")
        other = load_recipe(recipe_path(name, recipe.path))
        others[name] = other
        if name not in done:  # a recipe required twice (distill needs r1-zero and r1) runs once
            log(f"[pipeline] {recipe.name} requires {name}: running or resuming it first")
            run_recipe(other, log=log, _stack=stack, _done=done)
    done.add(recipe.name)
    resolver = Resolver(recipe, others)
    # the required recipes' time, for the model card (they finished above; read once)
    required_s = sum(json.loads((Path(o.out_dir) / "pipeline.json").read_text()).get("total_s", 0)
                     for o in others.values() if (Path(o.out_dir) / "pipeline.json").is_file())
    root = Path(recipe.out_dir)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    record = {"recipe": recipe.name, "path": recipe.path, "stages": []}
    for spec in recipe.stages:
        folder = root / spec.name
        config = resolver.resolve(spec.config)
        suite = _suite_for(spec, recipe)
        h = config_hash({"kind": spec.kind, "config": config, "eval": suite and dataclasses.asdict(suite)})
        inputs = resolver.inputs_fingerprint()
        state_file = folder / STAGE_FILE
        state = json.loads(state_file.read_text()) if state_file.is_file() else {}
        same = state.get("config_hash") == h and state.get("inputs", inputs) == inputs
        skip = (only and spec.name not in only) or (
            state.get("status") == "done" and same and spec.name not in (force or []))
        if skip:
            if state.get("status") != "done":
                log(f"[pipeline] {recipe.name}/{spec.name}: not run (not in --only)")
                continue
            log(f"[pipeline] {recipe.name}/{spec.name}: done before, skipped")
            record["stages"].append(state)
            continue
        if state and (state.get("status") == "done" or not same):
            # Finished before (forced or changed), or cut off under another config or other inputs:
            # its checkpoints belong to that other run, so start over instead of resuming them.
            log(f"[pipeline] {recipe.name}/{spec.name}: its config or an input stage changed since it ran; "
                "running it again")
            import shutil

            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        log(f"[pipeline] {recipe.name}/{spec.name} ({spec.kind}) ...")
        started = time.time()
        state = {"name": spec.name, "kind": spec.kind, "status": "running", "config_hash": h, "inputs": inputs,
                 "config": config, "output": str(folder / KINDS[spec.kind][1]), "started": started}
        atomic_write_text(state_file, json.dumps(state, indent=1))
        _run_stage(spec, config, folder, recipe, record["stages"], required_s)
        state["train_s"] = round(time.time() - started, 1)
        if suite is not None:
            log(f"[pipeline] {recipe.name}/{spec.name}: held-out eval ({len(suite.sets)} sets, k={suite.k})")
            ev = evaluate(folder / "model", suite, folder / "eval.json")
            state["eval"] = ev["all"]
            state["eval_s"] = ev["elapsed_s"]
        state["elapsed_s"] = round(time.time() - started, 1)
        state["status"] = "done"
        atomic_write_text(state_file, json.dumps(state, indent=1))
        log(f"[pipeline] {recipe.name}/{spec.name}: done in {state['elapsed_s']:.0f}s"
            + (f", pass@1 {state['eval']['pass@1']:.3f}" if state.get("eval") else ""))
        record["stages"].append(state)
    record["this_run_s"] = round(time.time() - t0, 1)
    record["total_s"] = round(sum(s.get("elapsed_s", 0) for s in record["stages"]), 1)
    atomic_write_text(root / "pipeline.json", json.dumps(record, indent=1))
    return record


# ------------------------------------------------------------------------------ CLI
def add_parser(subparsers) -> None:
    p = subparsers.add_parser("pipeline", help="run a multi-stage training recipe (r1-zero, r1, distill)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("recipe", nargs="?", help="recipes/NAME.yaml (or just NAME)")
    p.add_argument("--out", default=None, help="run folder (default: the recipe's out_dir, runs/NAME)")
    p.add_argument("--only", nargs="*", default=None, help="run just these stages (the others must be done)")
    p.add_argument("--force", nargs="*", default=None, help="run these stages again even if done")
    p.add_argument("--report", action="store_true", help="write docs/results.md from the runs' records and exit")
    p.add_argument("--runs", default="runs", help="with --report: the folder holding the recipes' runs")
    p.add_argument("--docs", default="docs", help="with --report: where results.md and its plots go")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="recipe overrides, e.g. eval.limit=16 (stage configs: edit the YAML)")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from r1.train.config import parse_overrides

    if args.report:
        from r1.train.results import write_report

        print(write_report(Path(args.runs), Path(args.docs)))
        return 0
    if not args.recipe:
        print("r1 pipeline: name a recipe, e.g. `r1 pipeline recipes/r1-zero.yaml`")
        return 2
    path = Path(args.recipe)
    if not path.is_file() and (Path("recipes") / f"{args.recipe}.yaml").is_file():
        path = Path("recipes") / f"{args.recipe}.yaml"
    try:
        recipe = load_recipe(path, args.out, parse_overrides(args.overrides))
        run_recipe(recipe, only=args.only, force=args.force)
    except TrainConfigError as e:
        print(f"r1 pipeline: {e}")
        return 2
    return 0

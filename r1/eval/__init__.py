"""Evaluation harness: pass@1 over k samples, cons@k, pass@k, reports and plots.

    from r1.eval import EvalConfig, EngineBackend, run_eval
    result = run_eval(EngineBackend("model.gguf"), EvalConfig(task="arithmetic", k=16, limit=50))
    result["metrics"]["pass@1"]
"""
from r1.eval.backend import Backend, EngineBackend, Generation
from r1.eval.metrics import majority_vote, pass_at_k
from r1.eval.runner import EvalConfig, load_problems, run_eval

__all__ = ["Backend", "EngineBackend", "Generation", "EvalConfig", "load_problems", "run_eval", "majority_vote", "pass_at_k"]

"""Reward-model evaluation: ProcessBench, RewardBench math-prm, RewardMATH, PRMBench, selection from stored
samples, and robustness probes; scores files in and out; `run_rm_eval` is the CLI's entry point."""
from .critic import critic_predictions, critic_prompt, parse_critic_index
from .prmbench import evaluate_prmbench, load_prmbench, prm_score, prmbench_items, step_confusion
from .prmbench import oracle_scores as prmbench_oracle_scores
from .probes import PERTURBATIONS, probe_table, rank_flip_fraction
from .processbench import (best_threshold, evaluate_critic, evaluate_processbench, first_error_step, load_processbench,
                           processbench_f1, processbench_items, processbench_oracle_scores)
from .rewardbench import evaluate_rewardbench, load_pairs, pairwise_accuracy, rewardbench_items, stored_math_shepherd
from .rewardmath import one_vs_many, pairwise_metrics, rewardmath_metrics, rewardmath_table
from .runner import BENCHES, default_data_root, run_rm_eval
from .scores_io import ScoreItem, ScoresFileError, read_scores, score_items, write_scores
from .selection import pass_at_k, selection_curve, selection_metrics

__all__ = [
    "BENCHES", "PERTURBATIONS", "ScoreItem", "ScoresFileError", "best_threshold", "critic_prompt",
    "default_data_root", "evaluate_prmbench", "evaluate_processbench", "critic_predictions", "evaluate_critic",
    "evaluate_rewardbench", "first_error_step", "load_pairs", "load_prmbench", "load_processbench", "one_vs_many",
    "pairwise_accuracy", "pairwise_metrics", "parse_critic_index", "pass_at_k", "prm_score", "prmbench_items",
    "prmbench_oracle_scores", "probe_table", "processbench_f1", "processbench_items", "processbench_oracle_scores",
    "rank_flip_fraction", "read_scores", "rewardbench_items", "rewardmath_metrics", "rewardmath_table",
    "run_rm_eval", "score_items", "selection_curve", "selection_metrics", "step_confusion", "stored_math_shepherd",
    "write_scores",
]

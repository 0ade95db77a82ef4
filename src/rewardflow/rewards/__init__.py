from .base import AGGREGATIONS, Scorer, StepScores, aggregate
from .ensemble import ENSEMBLE_REDUCTIONS, EnsembleScorer
from .judge import JudgeScorer
from .registry import NAMED_SCORERS, SCORER_KINDS, load_scorer

__all__ = ["AGGREGATIONS", "ENSEMBLE_REDUCTIONS", "EnsembleScorer", "JudgeScorer", "NAMED_SCORERS", "SCORER_KINDS", "Scorer", "StepScores", "aggregate", "load_scorer"]

from .base import AGGREGATIONS, Scorer, StepScores, aggregate
from .registry import NAMED_SCORERS, SCORER_KINDS, load_scorer

__all__ = ["AGGREGATIONS", "NAMED_SCORERS", "SCORER_KINDS", "Scorer", "StepScores", "aggregate", "load_scorer"]

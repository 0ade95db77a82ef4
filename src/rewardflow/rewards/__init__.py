from .base import AGGREGATIONS, Scorer, StepScores, aggregate

__all__ = ["AGGREGATIONS", "Scorer", "StepScores", "aggregate"]

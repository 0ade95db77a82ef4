from .problem import DataError, Problem
from .steps import join_steps, split_steps

__all__ = ["DataError", "Problem", "join_steps", "split_steps"]

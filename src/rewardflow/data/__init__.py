"""Problems, sources (reasoning-gym, JSONL benchmarks), worked solutions and step splitting."""
from .gym import GymSource
from .jsonl import load_jsonl, read_rows
from .problem import DataError, Problem
from .steps import join_steps, split_steps
from .worked import chain_steps, worked_solution

__all__ = ["DataError", "GymSource", "Problem", "chain_steps", "join_steps", "load_jsonl", "read_rows", "split_steps", "worked_solution"]

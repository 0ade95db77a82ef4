"""Problems, sources (reasoning-gym, JSONL benchmarks, your own .jsonl/.json/.csv/.parquet files), worked solutions and step splitting."""
from .gym import GymSource
from .jsonl import DATA_SUFFIXES, is_data_file, load_jsonl, load_problems, read_rows
from .problem import DataError, Problem
from .steps import join_steps, split_steps
from .worked import chain_steps, worked_solution

__all__ = ["DATA_SUFFIXES", "DataError", "GymSource", "Problem", "chain_steps", "is_data_file", "join_steps", "load_jsonl", "load_problems", "read_rows", "split_steps", "worked_solution"]

from .base import Completion, LogprobOutput, Policy, SamplingParams, TokenBatch

__all__ = ["Completion", "LogprobOutput", "Policy", "SamplingParams", "TokenBatch"]

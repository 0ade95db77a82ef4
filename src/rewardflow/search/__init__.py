"""Test-time search: one function per strategy, same signature, one registry (STRATEGIES). Every strategy
returns, per problem, its chosen answer, all candidates, and the compute each model spent."""
from .base import Candidate, Compute, SearchConfig, SearchResult, answer_key
from .engine import Run, step_value
from .mcts import mcts, puct
from .particle import entropic_temperature, lookahead_modulated, particle
from .registry import NEEDS_DRAFT, STRATEGIES, USES_SCORER, get_strategy, run_search
from .sampling import (best_of_n, borda_votes, majority, self_certainty, self_certainty_borda, self_certainty_from_logprobs,
                       token_distributions, weighted_best_of_n)
from .speculative import accept_mask, speculative
from .summary import plot_accuracy_vs_flops, plot_compute, summarize
from .tree import beam, dvts, rebase, rebase_widths

__all__ = [
    "Candidate", "Compute", "NEEDS_DRAFT", "Run", "STRATEGIES", "SearchConfig", "SearchResult", "USES_SCORER", "accept_mask",
    "answer_key", "beam", "best_of_n", "borda_votes", "dvts", "entropic_temperature", "get_strategy", "lookahead_modulated",
    "majority", "mcts", "particle", "plot_accuracy_vs_flops", "plot_compute", "puct", "rebase", "rebase_widths", "run_search", "self_certainty", "self_certainty_borda",
    "self_certainty_from_logprobs", "speculative", "step_value", "summarize", "token_distributions", "weighted_best_of_n",
]

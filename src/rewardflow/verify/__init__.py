"""Answer extraction, equivalence and task scorers: pure, process-safe, never raise on model output."""
from .equiv import is_equiv
from .extract import extract_answer
from .verifier import Verifier, VerifyResult, score_text

__all__ = ["extract_answer", "is_equiv", "score_text", "Verifier", "VerifyResult"]

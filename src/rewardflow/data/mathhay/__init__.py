"""MathHay (Wang et al. 2024): long-context mathematical reasoning over synthetic documents hidden in a haystack.
`rewardflow mathhay build` writes the rows; see docs/mathhay.md."""
from .build import GROUP_FIELDS, PLACEMENTS, build_rows, group_fields, length_label, make_row, pad_context, parse_length, with_group_fields
from .docs import Doc, approx_tokens, load_corpus, make_doc, pools
from .questions import TASK_TYPES, Question, answer_text, evaluate, fact_from_text, make_question, n_operations, rederive

__all__ = ["Doc", "GROUP_FIELDS", "PLACEMENTS", "Question", "TASK_TYPES", "answer_text", "approx_tokens", "build_rows",
           "evaluate", "fact_from_text", "group_fields", "length_label", "load_corpus", "make_doc", "make_question",
           "make_row", "n_operations", "pad_context", "parse_length", "pools", "rederive", "with_group_fields"]

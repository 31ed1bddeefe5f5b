"""First-stage retrieval shared by evaluation, negative mining and teachers.

A *run* is ``{query_id: {doc_id: score}}``, the format trec_eval and pytrec_eval read.
"""

Run = dict[str, dict[str, float]]

__all__ = ["Run"]

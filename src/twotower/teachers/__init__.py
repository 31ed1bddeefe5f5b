"""Teachers: models that score (query, document) pairs for distillation and negative filtering.

Every teacher has ``name``, ``fingerprint`` and ``score_pairs(query_texts, doc_texts)`` (float32,
cached on disk under ``<cache_root>/teacher_scores/``).
"""

from twotower.teachers.base import ScoringStats, Teacher
from twotower.teachers.bi_encoder import BiEncoderTeacher
from twotower.teachers.cache import ScoreCache, pair_key, score_cache_dir
from twotower.teachers.cross_encoder import CrossEncoderTeacher
from twotower.teachers.fusion import FusionTeacher, min_max_top
from twotower.teachers.normalize import (
    TeacherScores,
    keep_queries,
    normalize_percentile,
    normalize_scores,
    percentile_bounds,
)
from twotower.teachers.scores import read_scores, score_collection_pairs, write_scores
from twotower.teachers.scores_file import ScoresFileTeacher
from twotower.teachers.spec import build_teacher, parse_teacher_spec

__all__ = [
    "BiEncoderTeacher",
    "CrossEncoderTeacher",
    "FusionTeacher",
    "ScoreCache",
    "ScoresFileTeacher",
    "ScoringStats",
    "Teacher",
    "TeacherScores",
    "build_teacher",
    "keep_queries",
    "min_max_top",
    "normalize_percentile",
    "normalize_scores",
    "pair_key",
    "parse_teacher_spec",
    "percentile_bounds",
    "read_scores",
    "score_cache_dir",
    "score_collection_pairs",
    "write_scores",
]

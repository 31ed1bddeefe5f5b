"""Teacher specifications as typed on the command line: ``KIND:NAME``."""

from __future__ import annotations

from twotower.data.beir import Corpus
from twotower.data.collection import Collection
from twotower.errors import ConfigError
from twotower.teachers.base import Teacher
from twotower.teachers.bi_encoder import BiEncoderTeacher
from twotower.teachers.cross_encoder import CrossEncoderTeacher
from twotower.teachers.fusion import FusionTeacher
from twotower.teachers.scores_file import ScoresFileTeacher

# One spelling, the recipe's (teacher.kind); the command line's hyphens and short names map to it.
KINDS = ("cross_encoder", "bi_encoder", "fusion", "scores_file")
ALIASES = {
    "cross-encoder": "cross_encoder",
    "ce": "cross_encoder",
    "crossencoder": "cross_encoder",
    "bi-encoder": "bi_encoder",
    "be": "bi_encoder",
    "biencoder": "bi_encoder",
    "dense": "bi_encoder",
    "file": "scores_file",
    "scores": "scores_file",
    "scores-file": "scores_file",
}
EXPECTED = "cross_encoder:NAME, bi_encoder:NAME, fusion:NAME or scores_file:SCORES.jsonl"


def parse_teacher_spec(spec: str) -> tuple[str, str]:
    """``cross_encoder:PATH`` | ``bi_encoder:NAME`` | ``fusion:NAME`` (BM25 + dense NAME) |
    ``scores_file:SCORES.jsonl`` (scores of a ``twotower teach`` run or a published file) →
    (kind, name), the kind spelt as :data:`KINDS` (``cross-encoder``, ``file``, … accepted)."""
    kind, sep, name = spec.partition(":")
    kind = ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if not sep or kind not in KINDS or not name.strip():
        raise ConfigError(f"teacher '{spec}': expected {EXPECTED}")
    return kind, name.strip()


def build_teacher(
    kind: str,
    name: str,
    *,
    corpus: Corpus | None = None,
    collection: Collection | None = None,
    device: str | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    alpha: float = 0.5,
    trust_remote_code: bool = False,
    show_progress: bool = True,
    use_cache: bool = True,
) -> Teacher:
    """Build a teacher of ``kind`` (a name of :data:`KINDS` or an alias, as a recipe's
    ``teacher.kind``); ``fusion`` needs the ``corpus`` it scores, ``file`` the ``collection``
    whose ids the file uses."""
    kind = ALIASES.get(kind, kind)
    if kind not in KINDS:
        raise ConfigError(f"teacher kind '{kind}': expected one of {', '.join(KINDS)}")
    if kind == "scores_file":
        if collection is None:
            raise ConfigError(
                "a teacher scores file needs the collection whose query and document ids it uses"
            )
        return ScoresFileTeacher(name, collection, show_progress=show_progress)
    if corpus is None and collection is not None:
        corpus = collection.corpus
    if kind == "cross_encoder":
        return CrossEncoderTeacher(
            name,
            device=device,
            batch_size=batch_size,
            max_length=max_length,
            trust_remote_code=trust_remote_code,
            show_progress=show_progress,
            use_cache=use_cache,
        )
    # A dense teacher encodes with the encoder's own batching, as mining's retriever does, so the
    # two share one corpus encoding (bf16 keys carry any other batching); ``batch_size`` is the
    # cross-encoder's pairs per forward.
    if kind == "bi_encoder":
        return BiEncoderTeacher(
            name,
            device=device,
            max_length=max_length,
            show_progress=show_progress,
            use_cache=use_cache,
        )
    if corpus is None:
        raise ConfigError("the fusion teacher needs the collection's corpus")

    return FusionTeacher(
        corpus,
        name,
        alpha=alpha,
        device=device,
        max_length=max_length,
        show_progress=show_progress,
        use_cache=use_cache,
    )

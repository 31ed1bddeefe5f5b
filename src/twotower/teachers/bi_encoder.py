"""A bi-encoder teacher: the cosine of a sentence-transformers model's query and document embeddings."""

from __future__ import annotations

import numpy as np

from twotower.models.encoder import Encoder
from twotower.teachers.base import Teacher


class BiEncoderTeacher(Teacher):
    """Score = cosine similarity (dot product of the :class:`Encoder`'s L2-normalised embeddings).

    Any model :meth:`Encoder.from_name` loads (e.g. ``all-mpnet-base-v2``, resolved offline from
    its PyPI packages). Query and document prompts of the model are honoured.
    """

    kind = "bi_encoder"

    def __init__(
        self,
        name_or_encoder: str | Encoder,
        *,
        device: str | None = None,
        batch_size: int = 64,
        max_length: int | None = None,
        precision: str = "fp32",
        show_progress: bool = True,
        use_cache: bool = True,
    ) -> None:
        if isinstance(name_or_encoder, Encoder):
            encoder = name_or_encoder
        else:
            encoder = Encoder.from_name(
                name_or_encoder,
                device=device,
                batch_size=batch_size,
                max_length=max_length,
                precision=precision,
                show_progress=False,
            )
        super().__init__(
            name=str(encoder.name),
            batch_size=encoder.batch_size,
            show_progress=show_progress,
            use_cache=use_cache,
        )
        self.encoder = encoder

    @property
    def fingerprint(self) -> str:
        return self.encoder.fingerprint

    def _score_batch(self, query_texts: list[str], doc_texts: list[str]) -> np.ndarray:
        unique_queries = list(dict.fromkeys(query_texts))
        unique_docs = list(dict.fromkeys(doc_texts))
        q_rows = {t: i for i, t in enumerate(unique_queries)}
        d_rows = {t: i for i, t in enumerate(unique_docs)}
        q_emb = self.encoder.encode_queries(unique_queries)
        d_emb = self.encoder.encode_documents(unique_docs)
        q = q_emb[[q_rows[t] for t in query_texts]]
        d = d_emb[[d_rows[t] for t in doc_texts]]
        return np.einsum("ij,ij->i", q, d)

"""Small random float64 batches for the loss tests (ids drawn from tiny ranges to force collisions)."""

from __future__ import annotations

import torch

from twotower.losses import EmbeddingBatch


def make_batch(
    *,
    rows: int = 5,
    dim: int = 6,
    k: int = 3,
    m: int = 2,
    p: int = 0,
    ragged: bool = False,
    ids: bool = False,
    teacher: bool = False,
    pair_scores: bool = False,
    seed: int = 0,
    requires_grad: bool = False,
) -> EmbeddingBatch:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        t = torch.randn(*shape, generator=g, dtype=torch.float64)
        return t.requires_grad_(requires_grad)

    def randint(lo, hi, *shape):
        return torch.randint(lo, hi, shape, generator=g)

    b = EmbeddingBatch(queries=randn(rows, dim), positives=randn(rows, dim))
    if k:
        b.hard_negatives = randn(rows, k, dim)
    if m:
        b.negative_queries = randn(rows, m, dim)
    if p:
        b.candidates = randn(rows, p, dim)
    if ragged:
        if k:
            mask = torch.rand(rows, k, generator=g) > 0.35
            mask[0, :] = False  # one row with no hard negative at all
            b.hard_negatives_mask = mask
        if m:
            b.negative_queries_mask = torch.rand(rows, m, generator=g) > 0.35
        if p:
            mask = torch.rand(rows, p, generator=g) > 0.3
            mask[:, 0] = True
            b.candidates_mask = mask
    if ids:
        b.positive_ids = randint(0, rows + 1, rows)
        b.query_ids = randint(0, rows, rows)
        b.query_positive_ids = randint(-1, rows + 4, rows, 2)
        if k:
            b.hard_negative_ids = randint(0, rows + 4, rows, k)
        if m:
            b.negative_query_ids = randint(0, rows + 2, rows, m)
        if p:
            b.candidate_ids = randint(0, rows * 2, rows, p)
    if teacher:
        b.teacher_positive_scores = torch.rand(rows, generator=g, dtype=torch.float64)
        if k:
            b.teacher_negative_scores = torch.rand(rows, k, generator=g, dtype=torch.float64)
        if m:
            b.teacher_negative_query_scores = torch.rand(rows, m, generator=g, dtype=torch.float64)
        if p:
            b.candidate_teacher_scores = torch.rand(rows, p, generator=g, dtype=torch.float64)
    if pair_scores:
        t = torch.rand(rows, rows, generator=g, dtype=torch.float64)
        t[1, 2] = float("nan")  # a pair the teacher did not score
        b.teacher_pair_scores = t
    return b


def gradcheck_embeddings(loss, base: EmbeddingBatch) -> bool:
    """``torch.autograd.gradcheck`` of ``loss`` w.r.t. every embedding block of ``base``."""
    import dataclasses

    def f(q, d, h, nq):
        return loss(
            dataclasses.replace(base, queries=q, positives=d, hard_negatives=h, negative_queries=nq)
        )

    inputs = tuple(
        t.detach().clone().requires_grad_(True)
        for t in (base.queries, base.positives, base.hard_negatives, base.negative_queries)
    )
    return torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5)

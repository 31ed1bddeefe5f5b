r"""Margin-MSE distillation (Hofstätter et al. 2020) and its dual (after DANCE, Li et al. 2021).

    l(q, d+, d-)   = ( [s(q,d+) - s(q,d-)]  -  [T(q,d+) - T(q,d-)] )²
    l_d(d, q+, q-) = ( [s(d,q+) - s(d,q-)]  -  [T(q+,d) - T(q-,d)] )²
    L = mean_{i,k} l(q_i, d_i, d_i^-(k))  +  λ · mean_{i,m} l_d(d_i, q_i, q_i^-(m))

The means run over the *real* (unmasked) pairs, so ragged negative lists are handled by the padding
masks; with no padding the first term is exactly sentence-transformers' ``MarginMSELoss``
(``nn.MSELoss`` over the (N, K) margins). ``s`` is the dot product by default, as in the paper and
in sentence-transformers; s(d, q) = s(q, d).

What the caller provides (in :class:`~twotower.losses.batch.EmbeddingBatch`):

* always: ``hard_negatives`` (R, K, D), ``teacher_positive_scores`` (R,) = T(q_i, d_i) and
  ``teacher_negative_scores`` (R, K) = T(q_i, d_i^-(k)); optional ``hard_negatives_mask``.
* dual, ``dual_negatives='mined'`` (DANCE-style negative queries): ``negative_queries`` (R, M, D)
  and ``teacher_negative_query_scores`` (R, M) = T(q_i^-(m), d_i), i.e. the teacher (e.g. a
  cross-encoder) scoring each *negative query* against the positive document of its row; optional
  ``negative_queries_mask``.
* dual, ``dual_negatives='in_batch'`` (the other queries of the batch are d_i's negatives):
  ``teacher_pair_scores`` (R, R) with entry [a, b] = T(q_a, d_b) for every query and positive
  document of the batch (R² teacher calls; NaN marks a pair not scored, which is skipped). The
  positive T(q_i, d_i) is read from its diagonal. Rows whose query or positive id equals the
  anchor's (duplicates) are skipped when ids are given.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from twotower.errors import ConfigError
from twotower.losses.base import EmbeddingLoss, check_weight
from twotower.losses.batch import BatchLayout, BatchShapeError, EmbeddingBatch
from twotower.losses.citations import CITE_DANCE, CITE_MARGIN_MSE
from twotower.losses.similarity import SimilarityName, check_similarity, prepare

DUAL_NEGATIVES: tuple[str, ...] = ("mined", "in_batch")


def _masked_mse(err: Tensor, valid: Tensor | None) -> Tensor:
    if valid is None:
        return err.pow(2).mean()
    # Fill before squaring: padded slots may hold NaN teacher scores, and 0 * NaN gradients are NaN.
    # clamp_min(1): a batch without any real pair contributes 0, without a host-device sync.
    return err.masked_fill(~valid, 0.0).pow(2).sum() / valid.sum().clamp_min(1)


class MarginMSELoss(EmbeddingLoss):
    """Margin-MSE (``dual_weight=0``) or Margin-MSE-Dual (``dual_weight=λ>0``).

    Args:
        similarity: ``dot`` (default, as the paper) or ``cosine``.
        dual_weight: λ, the weight of the dual term l_d; 0 disables it.
        dual_negatives: where d_i's negative queries come from: ``mined`` (batch.negative_queries
            with teacher_negative_query_scores) or ``in_batch`` (the other queries, with
            teacher_pair_scores). See the module docstring.
        layout: what the batches will contain; when given, impossible configurations are refused now.

    References:
        - Hofstätter et al. 2020, "Improving Efficient Neural Ranking Models with
          Cross-Architecture Knowledge Distillation" (Margin-MSE).
        - Li et al. 2021, "More Robust Dense Retrieval with Contrastive Dual Learning" (DANCE:
          the document-anchored dual direction).

    Requirements:
        1. (query, positive, hard negatives) with teacher scores of every (query, document) pair.
        2. The dual term: mined negative queries with their teacher scores, or teacher scores of
           every in-batch (query, positive) pair.

    Inputs:
        +-------------------------------------------+--------------------------------------------+
        | EmbeddingBatch fields                     | Teacher scores                             |
        +===========================================+============================================+
        | queries, positives, hard_negatives        | teacher_positive_scores,                   |
        |                                           | teacher_negative_scores                    |
        +-------------------------------------------+--------------------------------------------+
        | + negative_queries (``mined`` dual)       | + teacher_negative_query_scores            |
        +-------------------------------------------+--------------------------------------------+
        | (``in_batch`` dual)                       | + teacher_pair_scores                      |
        +-------------------------------------------+--------------------------------------------+

    Relations:
        - sentence-transformers' ``MarginMSELoss`` is the first term (``dual_weight=0``) with no
          padding.
    """

    name = "margin_mse"
    st_counterpart = "MarginMSEDualLoss"

    def __init__(
        self,
        *,
        similarity: SimilarityName = "dot",
        dual_weight: float = 0.0,
        dual_negatives: str = "mined",
        layout: BatchLayout | None = None,
    ) -> None:
        super().__init__()
        self.similarity = check_similarity(similarity)
        self.dual_weight = check_weight(dual_weight, "dual_weight")
        if dual_negatives not in DUAL_NEGATIVES:
            raise ConfigError(
                f"dual_negatives: must be one of {list(DUAL_NEGATIVES)}, got {dual_negatives!r}"
            )
        self.dual_negatives = dual_negatives
        if layout is not None:
            self.check_layout(layout)

    @property
    def uses_mined_queries(self) -> bool:
        return self.dual_weight > 0 and self.dual_negatives == "mined"

    def check_layout(self, layout: BatchLayout) -> None:
        if not layout.hard_negatives:
            raise ConfigError(
                "margin_mse: needs hard-negative documents (l(q, d+, d-)), but the batch has none"
            )
        if not layout.teacher_scores:
            raise ConfigError("margin_mse: needs teacher scores, but the batch layout has none")
        if self.uses_mined_queries and not layout.negative_queries:
            raise ConfigError(
                "dual_weight: the dual term with dual_negatives='mined' needs hard-negative queries, but the"
                " batch has no negative-query column (set the number of negative-query columns, or use"
                " dual_negatives='in_batch')"
            )
        if self.dual_weight > 0 and not layout.document_anchors:
            raise ConfigError(
                "dual_weight: the dual term l_d(d, q+, q-) anchors on documents, but the batch layout says"
                " there are no document-side anchors (document_anchors=False)"
            )

    @property
    def reads(self) -> frozenset[str]:
        r = {"hard_negatives", "teacher"}
        if self.uses_mined_queries:
            r.add("negative_queries")
        return frozenset(r)

    def compute_terms(self, batch: EmbeddingBatch) -> dict[str, Tensor]:
        """``margin_mse`` and, with ``dual_weight > 0``, ``margin_mse_dual`` (λ · l_d)."""
        batch.validate()
        sl = batch.anchor_slice
        for name in ("hard_negatives", "teacher_positive_scores", "teacher_negative_scores"):
            if getattr(batch, name) is None:
                raise BatchShapeError(f"margin_mse: batch.{name} is required")
        assert (  # for the type checker: the loop above raised otherwise
            batch.hard_negatives is not None
            and batch.teacher_positive_scores is not None
            and batch.teacher_negative_scores is not None
        )
        if batch.hard_negatives.shape[1] == 0:  # the mean over no pairs would be NaN
            raise BatchShapeError(
                "margin_mse: batch.hard_negatives is empty (K = 0); Margin-MSE needs at least one"
                " hard negative per query"
            )
        q = prepare(batch.queries[sl], self.similarity)
        d = prepare(batch.positives[sl], self.similarity)
        h = prepare(batch.hard_negatives[sl], self.similarity)
        s_pos = (q * d).sum(-1)  # (n,)
        s_neg = torch.einsum("nd,nkd->nk", q, h)  # (n, K)
        t_pos = batch.teacher_positive_scores[sl].detach()
        t_neg = batch.teacher_negative_scores[sl].detach()
        err = (s_pos.unsqueeze(1) - s_neg) - (t_pos.unsqueeze(1) - t_neg)
        valid = batch.hard_negatives_mask[sl] if batch.hard_negatives_mask is not None else None
        terms = {self.name: _masked_mse(err, valid)}
        if self.dual_weight > 0:
            terms[f"{self.name}_dual"] = self.dual_weight * self._dual(batch, q, d, s_pos)
        return terms

    def _dual(self, batch: EmbeddingBatch, q: Tensor, d: Tensor, s_pos: Tensor) -> Tensor:
        sl = batch.anchor_slice
        assert batch.teacher_positive_scores is not None  # compute_terms checked it
        if self.dual_negatives == "mined":
            if batch.negative_queries is None or batch.teacher_negative_query_scores is None:
                raise BatchShapeError(
                    "margin_mse dual (mined): batch.negative_queries and batch.teacher_negative_query_scores"
                    " are required"
                )
            if batch.negative_queries.shape[1] == 0:
                raise BatchShapeError(
                    "margin_mse dual (mined): batch.negative_queries is empty (M = 0); the dual term"
                    " needs at least one negative query per document"
                )
            nq = prepare(batch.negative_queries[sl], self.similarity)
            s_dneg = torch.einsum("nd,nmd->nm", d, nq)  # s(d_i, q_i^-(m))
            t_pos = batch.teacher_positive_scores[sl].detach()
            t_dneg = batch.teacher_negative_query_scores[sl].detach()  # T(q_i^-(m), d_i)
            err = (s_pos.unsqueeze(1) - s_dneg) - (t_pos.unsqueeze(1) - t_dneg)
            valid = (
                batch.negative_queries_mask[sl] if batch.negative_queries_mask is not None else None
            )
            return _masked_mse(err, valid)
        if batch.teacher_pair_scores is None:
            raise BatchShapeError(
                "margin_mse dual (in_batch): batch.teacher_pair_scores (R, R) is required"
            )
        idx = batch.anchor_index()
        qall = prepare(batch.queries, self.similarity)
        s_dq = d @ qall.T  # (n, R): s(d_i, q_j)
        t = batch.teacher_pair_scores.detach()
        t_col = t[:, idx].T  # (n, R): T(q_j, d_i)
        t_pos = t[idx, idx]  # T(q_i, d_i)
        s_p = s_dq.gather(1, idx.unsqueeze(1))
        err = (s_p - s_dq) - (t_pos.unsqueeze(1) - t_col)
        valid = torch.ones_like(s_dq, dtype=torch.bool)
        valid[torch.arange(idx.numel(), device=idx.device), idx] = False
        valid &= ~torch.isnan(t_col)
        if batch.query_ids is not None:
            qid = batch.query_ids
            valid &= ~((qid.unsqueeze(0) == qid[idx].unsqueeze(1)) & (qid[idx].unsqueeze(1) >= 0))
        if batch.positive_ids is not None:
            pid = batch.positive_ids
            valid &= ~((pid.unsqueeze(0) == pid[idx].unsqueeze(1)) & (pid[idx].unsqueeze(1) >= 0))
        return _masked_mse(err, valid)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "similarity": self.similarity,
            "dual_weight": self.dual_weight,
            "dual_negatives": self.dual_negatives,
        }

    @property
    def citation(self) -> str:
        return CITE_MARGIN_MSE + ("\n" + CITE_DANCE if self.dual_weight > 0 else "")


__all__ = ["DUAL_NEGATIVES", "MarginMSELoss"]

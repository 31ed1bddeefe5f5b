r"""Listwise KL distillation with an optional contrastive term (Tamber et al. 2025).

For query q_i with P candidate documents c_i1..c_iP and teacher scores t_ij:

    L_list = 1/n Σ_i KL( softmax(t_i / T_t) || softmax(s_i / T_s) )        T_s = 0.05, T_t = 0.3
    L      = L_list + w_con · L_con                                      w_con = 0.1

    L_con  = -1/n Σ_i log  e^{s(q_i, c_i*)/τ} / Σ_{c ∈ pool, not masked} e^{s(q_i, c)/τ}    τ = 0.01

where c_i* is q_i's top-1 teacher candidate and the pool is every candidate of every row of the
batch. For anchor i the pool masks (a) q_i's own candidates whose teacher score exceeds
``near_top_ratio`` × the top score (0.6; likely positives, so not negatives — this assumes teacher
scores normalised to [0, 1] as in the paper), (b) when ``candidate_ids`` are given, every pool
entry carrying the id of c_i* or of one of those near-top candidates, and repeated ids (first
occurrence kept).

Ragged lists: ``candidates_mask`` marks real candidates; a non-finite teacher score (NaN / ±inf) also
marks a slot as absent. Rows with no real candidate are left out of the mean.

When ``batch.candidates`` is None the list is [positive, hard negatives] with teacher scores
[teacher_positive_scores, teacher_negative_scores] and ids [positive_ids, hard_negative_ids], so the
same encoded batch can feed Margin-MSE and listwise distillation.

Difference from sentence-transformers' ``DistillKLDivLoss``: it multiplies the KL by T_s²
(Hinton et al.'s gradient-magnitude correction); Tamber et al. do not. ``temperature_squared_scaling``
switches the factor on, which makes the two identical (with ``contrastive_weight=0``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from twotower.errors import ConfigError
from twotower.losses.base import EmbeddingLoss, check_temperature, check_weight
from twotower.losses.batch import BatchLayout, BatchShapeError, EmbeddingBatch
from twotower.losses.citations import CITE_LISTWISE
from twotower.losses.false_negatives import false_negatives
from twotower.losses.similarity import SimilarityName, check_similarity, prepare


class ListwiseKLLoss(EmbeddingLoss):
    """KL(teacher || student) over candidate lists, plus an optional InfoNCE term.

    Args:
        student_temperature: T_s (0.05).
        teacher_temperature: T_t (0.3).
        contrastive_weight: w_con (0.1); 0 disables L_con.
        contrastive_temperature: τ of L_con (0.01).
        near_top_ratio: mask own candidates with t > ratio × top in L_con (0.6); None disables.
        similarity: ``cosine`` (default; the paper L2-normalises) or ``dot``.
        temperature_squared_scaling: multiply the KL by T_s² as sentence-transformers does.
        layout: what the batches will contain; when given, impossible configurations are refused now.

    References:
        - Tamber et al. 2025, "Conventional Contrastive Learning Often Falls Short: Improving
          Dense Retrieval with Cross-Encoder Listwise Distillation and Synthetic Data".

    Requirements:
        1. Queries with candidate lists scored by a teacher: a separate ``candidates`` block, or
           the positive and hard negatives with their teacher scores.

    Inputs:
        +-------------------------------------------+--------------------------------------------+
        | EmbeddingBatch fields                     | Teacher scores                             |
        +===========================================+============================================+
        | queries, candidates (+ candidates_mask,   | candidate_teacher_scores                   |
        | candidate_ids)                            |                                            |
        +-------------------------------------------+--------------------------------------------+
        | queries, positives, hard_negatives        | teacher_positive_scores,                   |
        | (+ hard_negatives_mask, ids)              | teacher_negative_scores                    |
        +-------------------------------------------+--------------------------------------------+

    Relations:
        - sentence-transformers' ``DistillKLDivLoss`` equals the KL term with
          ``temperature_squared_scaling=True`` and ``contrastive_weight=0``.
    """

    name = "listwise_kl"
    st_counterpart = "ListwiseDistillationLoss"

    def __init__(
        self,
        *,
        student_temperature: float = 0.05,
        teacher_temperature: float = 0.3,
        contrastive_weight: float = 0.1,
        contrastive_temperature: float = 0.01,
        near_top_ratio: float | None = 0.6,
        similarity: SimilarityName = "cosine",
        temperature_squared_scaling: bool = False,
        layout: BatchLayout | None = None,
    ) -> None:
        super().__init__()
        self.student_temperature = check_temperature(student_temperature, "student_temperature")
        self.teacher_temperature = check_temperature(teacher_temperature, "teacher_temperature")
        self.contrastive_weight = check_weight(contrastive_weight, "contrastive_weight")
        self.contrastive_temperature = check_temperature(
            contrastive_temperature, "contrastive_temperature"
        )
        if near_top_ratio is not None:
            near_top_ratio = check_weight(near_top_ratio, "near_top_ratio")
            if near_top_ratio > 1:
                raise ConfigError(
                    f"near_top_ratio: must be in [0, 1] (a fraction of the top teacher score), got {near_top_ratio}"
                )
        self.near_top_ratio = near_top_ratio
        self.similarity = check_similarity(similarity)
        self.temperature_squared_scaling = bool(temperature_squared_scaling)
        if layout is not None:
            self.check_layout(layout)

    def check_layout(self, layout: BatchLayout) -> None:
        if not layout.teacher_scores:
            raise ConfigError("listwise_kl: needs teacher scores, but the batch layout has none")
        if not (layout.listwise_candidates or layout.hard_negatives):
            raise ConfigError(
                "listwise_kl: a softmax over one candidate is constant; the batch needs listwise candidates"
                " or hard negatives next to the positive"
            )

    @property
    def reads(self) -> frozenset[str]:
        return frozenset({"hard_negatives", "teacher", "candidates"})

    @staticmethod
    def candidate_list(
        batch: EmbeddingBatch,
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """(candidates (R,P,D), mask (R,P) or None, teacher (R,P), ids (R,P) or None)."""
        if batch.candidates is not None:
            if batch.candidate_teacher_scores is None:
                raise BatchShapeError(
                    "listwise_kl: batch.candidate_teacher_scores is required with candidates"
                )
            return (
                batch.candidates,
                batch.candidates_mask,
                batch.candidate_teacher_scores,
                batch.candidate_ids,
            )
        if (
            batch.hard_negatives is None
            or batch.teacher_positive_scores is None
            or batch.teacher_negative_scores is None
        ):
            raise BatchShapeError(
                "listwise_kl: give batch.candidates + candidate_teacher_scores, or hard_negatives with"
                " teacher_positive_scores and teacher_negative_scores"
            )
        r, k = batch.hard_negatives.shape[:2]
        cand = torch.cat([batch.positives.unsqueeze(1), batch.hard_negatives], dim=1)
        teacher = torch.cat(
            [batch.teacher_positive_scores.unsqueeze(1), batch.teacher_negative_scores], dim=1
        )
        mask = None
        if batch.hard_negatives_mask is not None:
            mask = torch.cat(
                [batch.hard_negatives_mask.new_ones(r, 1), batch.hard_negatives_mask], dim=1
            )
        ids = None
        if batch.positive_ids is not None or batch.hard_negative_ids is not None:
            pid = (
                batch.positive_ids
                if batch.positive_ids is not None
                else torch.full((r,), -1, device=cand.device)
            )
            hid = (
                batch.hard_negative_ids
                if batch.hard_negative_ids is not None
                else torch.full((r, k), -1, device=cand.device)
            )
            ids = torch.cat([pid.long().unsqueeze(1), hid.long()], dim=1)
        return cand, mask, teacher, ids

    def compute_terms(self, batch: EmbeddingBatch) -> dict[str, Tensor]:
        """``listwise_kl`` and, with ``contrastive_weight > 0``, ``listwise_kl_contrastive``
        (w_con · L_con)."""
        batch.validate()
        sl = batch.anchor_slice
        idx = batch.anchor_index()
        cand, mask, teacher, ids = self.candidate_list(batch)
        r, p = teacher.shape
        if p == 0:
            raise BatchShapeError(
                "listwise_kl: batch.candidates is empty (P = 0); each query needs a candidate list"
            )
        teacher = teacher.detach()
        valid = torch.isfinite(teacher)
        if mask is not None:
            valid = valid & mask
        q = prepare(batch.queries[sl], self.similarity)
        c = prepare(cand, self.similarity)
        v = valid[sl]
        t = teacher[sl]
        rows = v.any(1)
        n_rows = rows.sum().clamp_min(1)  # no real candidate anywhere: the loss is 0 (no host sync)

        s = torch.einsum("nd,npd->np", q, c[sl])  # (n, P)
        neg_inf = float("-inf")
        log_ps = torch.log_softmax((s / self.student_temperature).masked_fill(~v, neg_inf), dim=1)
        log_pt = torch.log_softmax((t / self.teacher_temperature).masked_fill(~v, neg_inf), dim=1)
        pt = log_pt.exp()
        # where(): absent slots have pt = 0 and log-probs -inf; 0 * (-inf) must not become NaN.
        kl = torch.where(v, pt * (log_pt - log_ps), torch.zeros_like(s)).sum(1)
        kl = torch.where(rows, kl, torch.zeros_like(kl))  # an all-absent row would be NaN
        loss = kl.sum() / n_rows
        if self.temperature_squared_scaling:
            loss = loss * self.student_temperature**2
        terms = {self.name: loss}
        if self.contrastive_weight > 0:
            if ids is not None:
                # Padding can neither be forbidden nor a "first copy".
                ids = ids.long().masked_fill(~valid, -1)
            terms[f"{self.name}_contrastive"] = self.contrastive_weight * self._contrastive(
                q, c, t, v, valid, ids, idx, rows, n_rows
            )
        return terms

    def _contrastive(self, q, c, t, v, valid, ids, idx, rows, n_rows) -> Tensor:
        n = q.shape[0]
        r, p = valid.shape
        ar = torch.arange(n, device=q.device)
        t_fill = t.masked_fill(~v, float("-inf"))
        top = t_fill.argmax(1)  # (n,) top-1 teacher candidate of each anchor row
        pos_col = idx * p + top
        scores = (q / self.contrastive_temperature) @ c.reshape(r * p, -1).T  # (n, R*P)
        pos = scores[ar, pos_col]
        drop = (~valid.reshape(1, -1)).expand(n, -1)
        # Own candidates too close to the top are probably positives: not negatives.
        if self.near_top_ratio is not None:
            top_score = t_fill[ar, top].unsqueeze(1)
            near = v & (t > self.near_top_ratio * top_score)
        else:
            near = torch.zeros_like(v)
        near[ar, top] = True  # the positive itself (its duplicates are masked through ids below)
        own = torch.zeros(n, r, p, dtype=torch.bool, device=q.device)
        own[ar, idx] = near
        drop = drop | own.reshape(n, r * p)
        if ids is not None:
            # The ids of the positive and of the near-top candidates, anywhere in the pool.
            forbidden = ids[idx].masked_fill(~near, -1)
            drop = drop | false_negatives(ids.reshape(1, -1), forbidden)
        drop = drop.clone()
        drop[ar, pos_col] = False
        lse = torch.logsumexp(scores.masked_fill(drop, float("-inf")), dim=1)
        per_row = torch.where(rows, lse - pos, torch.zeros_like(pos))
        return per_row.sum() / n_rows

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "student_temperature": self.student_temperature,
            "teacher_temperature": self.teacher_temperature,
            "contrastive_weight": self.contrastive_weight,
            "contrastive_temperature": self.contrastive_temperature,
            "near_top_ratio": self.near_top_ratio,
            "similarity": self.similarity,
            "temperature_squared_scaling": self.temperature_squared_scaling,
        }

    @property
    def citation(self) -> str:
        return CITE_LISTWISE


__all__ = ["ListwiseKLLoss"]

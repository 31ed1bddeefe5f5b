r"""The contrastive (InfoNCE) loss over explicit blocks and softmax groups.

Instead of one class per paper, the objective is a list of softmax groups
(:mod:`twotower.losses.softmax_groups`: the blocks q2d, d2q, q2q, d2d and the presets for MNRL,
DANCE, SamToNe and GTE). The blocks of a group share one softmax denominator; the loss is the
weighted sum of the groups' cross-entropies, and the numerator is always the positive pair
s(q_i, d_i) / τ. For row i and a group G with blocks B::

    L_G = -1/n Σ_i [ s(q_i,d_i)/τ - log Σ_{b∈B} Σ_{c ∈ cand_b(i)} e^{s(anchor_b(i), c)/τ} ]
    L   = Σ_G w_G · L_G

Candidates:

* Self-similarity (j = i within one tower: q2q, d2d) is always excluded.
* ``share_hard_negatives`` (default True, as MNRL): every row's hard negatives are candidates for
  every query; False keeps each query's own hard negatives only.
* ``share_negative_queries`` (default False, as DANCE): d_i sees only its own mined negative
  queries; True makes all rows' negative queries candidates of every document.
* ``d2d_own_hard_negatives`` (default False, as sentence-transformers): d_i's own hard negatives
  are not d2d negatives of d_i; they were mined to be close to q_i (hence to d_i) and are the most
  likely unlabelled positives. The q2d block already pushes q_i away from them. (With ids, other
  copies of those documents are then left out of d_i's d2d block too.)
* ``mask_false_negatives`` (default True): when the batch carries ids, copies of the anchor's
  positives leave the denominator (the rules are in :mod:`twotower.losses.false_negatives`).
* ``in_batch_negatives`` (default True): False leaves the other rows' texts out of every softmax,
  so an anchor sees its positive and the hard negatives only (ANCE's objective, Xiong et al.
  2021: the positive against one refreshed negative, with ``share_hard_negatives: false``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from twotower.errors import ConfigError
from twotower.losses.base import EmbeddingLoss, check_temperature
from twotower.losses.batch import BatchLayout, EmbeddingBatch
from twotower.losses.citations import CITE_DANCE, CITE_GTE, CITE_INFONCE, CITE_SAMTONE
from twotower.losses.false_negatives import BatchIds, block_false_negatives
from twotower.losses.similarity import SimilarityName, check_similarity, prepare
from twotower.losses.slabs import Slab, block_slabs, mask_union
from twotower.losses.softmax_groups import BLOCKS, DOCUMENT_SIDE, SoftmaxGroup, resolve_groups


class ContrastiveLoss(EmbeddingLoss):
    """InfoNCE over explicit blocks and softmax groups (van den Oord et al. 2018).

    For each anchor of the batch, the similarity to its paired text should be higher than to the
    other candidates of its softmax. Which candidates those are is declared per block: q2d (the
    query against all documents: MNRL / InfoNCE), d2q (the document against all queries: DANCE's
    dual objective), q2q and d2d (same-tower negatives: SamToNe). Blocks in one softmax group share
    a denominator (GTE's joint loss puts all four in one group); the groups' cross-entropies are
    summed with their weights. See the module docstring for the formula.

    Give exactly one of ``groups``, ``preset`` or ``directions`` (none: ``preset='mnrl'``).

    Args:
        groups: explicit softmax groups, e.g.
            ``[SoftmaxGroup(("q2d", "q2q")), SoftmaxGroup(("d2q", "d2d"), 0.5)]``
            (tuples ``(blocks, weight)`` are accepted).
        preset: one of ``mnrl``, ``mnrl_dual``, ``samtone_query``, ``samtone_both``, ``gte_joint``.
        directions: blocks to use, grouped by ``partition``; sentence-transformers' names
            (``query_to_doc``, ...) are accepted.
        partition: ``by_anchor`` (default: query-side and document-side softmaxes summed) or
            ``joint`` (one softmax over all blocks).
        dual_weight: λ, the weight of the document-side softmax for ``by_anchor`` and for the
            ``mnrl_dual`` / ``samtone_both`` presets (DANCE used 0.1).
        temperature: τ (scale = 1/τ); 0.05 = sentence-transformers' scale 20.
        similarity: ``cosine`` or ``dot``.
        share_hard_negatives, share_negative_queries, d2d_own_hard_negatives, mask_false_negatives:
            which candidates enter the denominators; see the module docstring.
        layout: what the batches will contain; when given, impossible configurations are refused
            now.

    References:
        - InfoNCE: van den Oord et al. 2018, "Representation Learning with Contrastive Predictive
          Coding"; MNRL: Henderson et al. 2017, "Efficient Natural Language Response Suggestion
          for Smart Reply".
        - d2q: Li et al. 2021, "More Robust Dense Retrieval with Contrastive Dual Learning"
          (DANCE).
        - q2q, d2d: Moiseev et al. 2023, "SamToNe: Improving Contrastive Loss for Dual Encoder
          Retrieval Models with Same Tower Negatives".
        - one joint softmax: Li et al. 2023, "Towards General Text Embeddings with Multi-stage
          Contrastive Learning" (GTE).

    Requirements:
        1. (query, positive) pairs, optionally with hard-negative documents.
        2. d2q reads mined negative queries when the batch has them; ids turn on false-negative
           masking.

    Inputs:
        +--------------------------------------------------------------+--------+
        | EmbeddingBatch fields                                        | Labels |
        +==============================================================+========+
        | queries, positives                                           | none   |
        +--------------------------------------------------------------+--------+
        | + hard_negatives (and hard_negatives_mask)                   | none   |
        +--------------------------------------------------------------+--------+
        | + negative_queries (and negative_queries_mask), for d2q      | none   |
        +--------------------------------------------------------------+--------+
        | + query_ids, positive_ids, hard_negative_ids,                | none   |
        |   negative_query_ids, query_positive_ids                     |        |
        +--------------------------------------------------------------+--------+

    Relations:
        - sentence-transformers' ``MultipleNegativesRankingLoss``: ``preset='mnrl'`` is its
          default; ``directions=[...], partition='joint'`` is its ``partition_mode='joint'``; its
          ``'per_direction'`` with (query_to_doc, doc_to_query) is 0.5 × ``mnrl_dual`` (λ = 1),
          since it averages the softmaxes where ``by_anchor`` sums them.
        - :class:`~twotower.losses.st_loss.SentenceTransformerLoss` and
          :class:`~twotower.losses.cached.CachedSentenceTransformerLoss` train a model with it;
          :func:`~twotower.losses.spec.build_loss` adds it to Margin-MSE or listwise distillation.

    Example:
        ::

            import torch
            from twotower.losses import ContrastiveLoss, EmbeddingBatch

            loss = ContrastiveLoss(preset="samtone_both", dual_weight=0.5)
            batch = EmbeddingBatch(
                queries=torch.randn(8, 32),
                positives=torch.randn(8, 32),
                hard_negatives=torch.randn(8, 4, 32),
            )
            value = loss(batch)
    """

    name = "contrastive"
    st_counterpart = "InfoNCELoss"

    def __init__(
        self,
        groups: Sequence[SoftmaxGroup | tuple[Sequence[str], float]] | None = None,
        *,
        preset: str | None = None,
        directions: Sequence[str] | None = None,
        partition: str = "by_anchor",
        dual_weight: float = 1.0,
        temperature: float = 0.05,
        similarity: SimilarityName = "cosine",
        share_hard_negatives: bool = True,
        share_negative_queries: bool = False,
        d2d_own_hard_negatives: bool = False,
        mask_false_negatives: bool = True,
        in_batch_negatives: bool = True,
        layout: BatchLayout | None = None,
    ) -> None:
        super().__init__()
        self.groups = resolve_groups(
            groups,
            preset=preset,
            directions=directions,
            partition=partition,
            dual_weight=dual_weight,
        )
        self.temperature = check_temperature(temperature, "temperature")
        self.similarity = check_similarity(similarity)
        self.share_hard_negatives = bool(share_hard_negatives)
        self.share_negative_queries = bool(share_negative_queries)
        self.d2d_own_hard_negatives = bool(d2d_own_hard_negatives)
        self.mask_false_negatives = bool(mask_false_negatives)
        self.in_batch_negatives = bool(in_batch_negatives)
        self.blocks = tuple(b for b in BLOCKS if any(b in g.blocks for g in self.groups))
        if layout is not None:
            self.check_layout(layout)

    @property
    def scale(self) -> float:
        return 1.0 / self.temperature

    def check_layout(self, layout: BatchLayout) -> None:
        doc_blocks = [b for b in self.blocks if b in DOCUMENT_SIDE]
        if doc_blocks and not layout.document_anchors:
            raise ConfigError(
                f"directions: {doc_blocks} anchor a softmax on documents, but the batch layout says"
                " there are no document-side anchors (document_anchors=False)"
            )
        if self.d2d_own_hard_negatives and "d2d" not in self.blocks:
            raise ConfigError("d2d_own_hard_negatives: set, but no d2d block is configured")

    @property
    def reads(self) -> frozenset[str]:
        r = {"hard_negatives"} if ("q2d" in self.blocks or "d2d" in self.blocks) else set()
        if "d2q" in self.blocks:
            r.add("negative_queries")
        return frozenset(r)

    # ------------------------------------------------------------------ computation
    def compute_loss_from_batch(self, batch: EmbeddingBatch) -> Tensor:
        batch.validate()
        sl = batch.anchor_slice
        idx = batch.anchor_index()
        n = idx.numel()
        ar = torch.arange(n, device=idx.device)
        Q = prepare(batch.queries, self.similarity)
        P = prepare(batch.positives, self.similarity)
        # Fold 1/τ into the (small) anchor matrices instead of scaling every score matrix.
        Qa = Q[sl] * self.scale
        Pa = P[sl] * self.scale
        H = (
            prepare(batch.hard_negatives, self.similarity)
            if batch.hard_negatives is not None
            else None
        )
        NQ = (
            prepare(batch.negative_queries, self.similarity)
            if batch.negative_queries is not None
            else None
        )

        ids = BatchIds.from_batch(batch, idx) if self.mask_false_negatives else None
        lse: dict[str, Tensor] = {}
        pos: Tensor | None = None
        for block in self.blocks:
            parts, block_pos = self._block(block, Qa, Pa, Q, P, H, NQ, batch, idx, ar, ids)
            if block == "q2d" or (block == "d2q" and pos is None):  # q2d's when both are there
                pos = block_pos
            # Log-sum-exp per slab, then combine: no concatenation of large score matrices.
            part_lse = [p.lse() for p in parts if p.scores.shape[-1] > 0]
            lse[block] = (
                part_lse[0]
                if len(part_lse) == 1
                else torch.logsumexp(torch.stack(part_lse, -1), -1)
            )
        assert pos is not None  # guaranteed: every group holds q2d or d2q
        total: Tensor | None = None
        for g in self.groups:
            if g.weight == 0:
                continue
            if len(g.blocks) == 1:
                z = lse[g.blocks[0]]
            else:
                z = torch.logsumexp(torch.stack([lse[b] for b in g.blocks], -1), -1)
            term = g.weight * (z - pos).mean()
            total = term if total is None else total + term
        assert total is not None
        return total

    # -- blocks --------------------------------------------------------------------
    def _block(self, block, Qa, Pa, Q, P, H, NQ, batch, idx, ar, ids: BatchIds | None):
        """One block's slabs and the positive pair's score: the anchors (scaled queries for q2d
        and q2q, scaled positives for d2d and d2q) against the batch's pool of the other side
        (positives for q2d and d2d, queries for d2q and q2q) and its slots (hard negatives for the
        document pool, the mined negative queries for d2q only)."""
        anchors = Qa if block[0] == "q" else Pa
        to_documents = block[2] == "d"
        pool = P if to_documents else Q
        slots = H if to_documents else (NQ if block == "d2q" else None)
        slot_mask = batch.hard_negatives_mask if to_documents else batch.negative_queries_mask
        shared = self.share_hard_negatives if to_documents else self.share_negative_queries
        # d2d: d_i's own hard negatives are not its candidates unless asked for (module doc).
        own_slots_out = block == "d2d" and not self.d2d_own_hard_negatives
        within_tower = block in ("q2q", "d2d")
        r, n = pool.shape[0], anchors.shape[0]
        scores = anchors @ pool.T  # (n, R); column idx[i] is the anchor row's own pair
        pos = scores[ar, idx]
        drop: Tensor | None = None
        if within_tower or not self.in_batch_negatives:
            own = torch.zeros(n, r, dtype=torch.bool, device=anchors.device)
            own[ar, idx] = True  # the anchor itself (within a tower) or its positive
            if self.in_batch_negatives:
                drop = own
            else:  # only a cross-tower block's own positive stays
                drop = torch.ones_like(own) if within_tower else ~own
        part: Slab | None = None
        if slots is not None and slots.shape[1] > 0:
            if shared:
                slot_drop = None if slot_mask is None else ~slot_mask.reshape(1, -1)
                if own_slots_out:
                    owner = torch.arange(r, device=anchors.device).repeat_interleave(slots.shape[1])
                    slot_drop = mask_union(slot_drop, owner.unsqueeze(0) == idx.unsqueeze(1))
                part = Slab(anchors @ slots.reshape(-1, slots.shape[-1]).T, slot_drop)
            elif not own_slots_out:
                mine = slots[batch.anchor_slice]
                part = Slab(
                    torch.einsum("nd,nkd->nk", anchors, mine),
                    None if slot_mask is None else ~slot_mask[batch.anchor_slice],
                )
        fn: Tensor | None = None
        if ids is not None:
            if to_documents:
                pool_ids, slot_ids, forbidden = (
                    ids.documents,
                    ids.hard_negatives,
                    ids.not_negatives_of_anchor,
                )
            else:  # a query is a false negative of its own row's query id
                pool_ids, slot_ids, forbidden = (
                    ids.queries,
                    ids.negative_queries,
                    ids.queries[idx].unsqueeze(1),
                )
            fn = block_false_negatives(
                pool_ids,
                slot_ids if part is not None else None,
                forbidden,
                shared=shared,
                anchor_slice=batch.anchor_slice,
            )
            if block == "d2q":  # the queries that judge d_i relevant are its positives too
                fn[:, :r] |= ids.queries_relevant_to_documents(idx)
            fn[:, :r][ar, idx] = False  # the own slot is never a false negative of itself
        return block_slabs(scores, drop, part, fn), pos

    # ------------------------------------------------------------------ metadata
    def get_config_dict(self) -> dict[str, Any]:
        return {
            "groups": [{"blocks": list(g.blocks), "weight": g.weight} for g in self.groups],
            "temperature": self.temperature,
            "similarity": self.similarity,
            "share_hard_negatives": self.share_hard_negatives,
            "share_negative_queries": self.share_negative_queries,
            "d2d_own_hard_negatives": self.d2d_own_hard_negatives,
            "mask_false_negatives": self.mask_false_negatives,
            "in_batch_negatives": self.in_batch_negatives,
        }

    def extra_repr(self) -> str:
        return (
            " + ".join(g.describe() for g in self.groups)
            + f", temperature={self.temperature:g}, similarity={self.similarity}"
        )

    @property
    def citation(self) -> str:
        cites = [CITE_INFONCE]
        if "d2q" in self.blocks:
            cites.append(CITE_DANCE)
        joint4 = any(set(g.blocks) == set(BLOCKS) for g in self.groups)
        if joint4:
            cites.append(CITE_GTE)
        elif "q2q" in self.blocks or "d2d" in self.blocks:
            cites.append(CITE_SAMTONE)
        return "\n".join(cites)


__all__ = ["ContrastiveLoss"]

r"""One contrastive (InfoNCE) loss with explicit blocks and softmax groups.

Instead of one class per paper, the objective is declared as a list of *softmax groups*. Each group
is a set of candidate *blocks* that share one softmax denominator, with a weight; the loss is the
weighted sum of the groups' cross-entropies. The numerator is always the positive pair
s(q_i, d_i) / τ.

Blocks (anchor → candidates; the first letter is the anchor's tower):

* ``q2d``  q_i → documents: the batch's positives d_j (d_i is the positive) and hard negatives.
  P(d | q), MNRL / InfoNCE (van den Oord et al. 2018; METHODS §1).
* ``d2q``  d_i → queries: the batch's queries q_j (q_i is the positive) and d_i's mined negative
  queries q_i^-(m). P(q | d), the dual objective of DANCE (METHODS §2).
* ``q2q``  q_i → the other queries q_j, j ≠ i. SamToNe query side (METHODS §3).
* ``d2d``  d_i → the other documents d_j, j ≠ i (and other rows' hard negatives). SamToNe
  document side.

For row i and a group G with blocks B::

    L_G = -1/n Σ_i [ s(q_i,d_i)/τ - log Σ_{b∈B} Σ_{c ∈ cand_b(i)} e^{s(anchor_b(i), c)/τ} ]
    L   = Σ_G w_G · L_G

Presets (``dual_weight`` = λ):

=================  ==============================================  ===========================
preset             groups                                          source
=================  ==============================================  ===========================
``mnrl``           [q2d]                                           InfoNCE / MNRL
``mnrl_dual``      [q2d] + λ·[d2q]                                 DANCE; the poster's MNRL-D
``samtone_query``  [q2d, q2q]                                      SamToNe, query side
``samtone_both``   [q2d, q2q] + λ·[d2q, d2d]  (two softmaxes, SUM)  SamToNe bidirectional
``gte_joint``      [q2d, q2q, d2q, d2d]       (one softmax)         GTE improved contrastive
=================  ==============================================  ===========================

Notes on definitions:

* A group must contain ``q2d`` or ``d2q``: only those blocks hold the positive pair. A group
  holding both (GTE joint) counts e^{s(q_i,d_i)/τ} twice in its denominator, exactly as GTE's
  formula Z = Σ_j e^{s(q_i,d_j)} + Σ_{j≠i} e^{s(q_i,q_j)} + Σ_j e^{s(q_j,d_i)} + Σ_{j≠i} e^{s(d_j,d_i)}
  and sentence-transformers' ``partition_mode='joint'`` do.
* Self-similarity (j = i within one tower: q2q, d2d) is always excluded.
* ``share_hard_negatives`` (default True, METHODS §1): every row's hard negatives are candidates
  for every query; False keeps each query's own hard negatives only.
* ``share_negative_queries`` (default False, METHODS §2 / DANCE): d_i sees only its own mined
  negative queries; True makes all rows' negative queries candidates of every document.
* ``d2d_own_hard_negatives`` (default False, as sentence-transformers): d_i's own hard negatives
  are not d2d negatives of d_i; they were mined to be close to q_i (hence to d_i) and are the most
  likely unlabelled positives. The q2d block already pushes q_i away from them. (With ids, other
  copies of those documents are then left out of d_i's d2d block too.)
* False negatives (when ids are given and ``mask_false_negatives``): for anchor row i, any
  candidate document whose id is d_i's id or one of q_i's known positives
  (``query_positive_ids``) is masked in q2d and d2d, except the positive slot itself; in d2q a
  query q_j is masked when it has q_i's id, d_i's id as its positive, or lists d_i among its known
  positives; in q2q a query with q_i's id is masked. A candidate id occurring twice in one block
  counts once (first occurrence kept).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from twotower.errors import ConfigError
from twotower.losses.base import EmbeddingLoss, check_temperature, check_weight
from twotower.losses.batch import (
    BatchLayout,
    EmbeddingBatch,
    first_occurrence_duplicates,
    id_in,
)
from twotower.losses.citations import CITE_DANCE
from twotower.losses.similarity import SimilarityName, check_similarity, prepare

Block = Literal["q2d", "d2q", "q2q", "d2d"]
BLOCKS: tuple[str, ...] = ("q2d", "d2q", "q2q", "d2d")
# sentence-transformers' direction names are accepted too.
BLOCK_ALIASES: dict[str, str] = {
    "query_to_doc": "q2d",
    "doc_to_query": "d2q",
    "query_to_query": "q2q",
    "doc_to_doc": "d2d",
}
QUERY_SIDE: tuple[str, ...] = ("q2d", "q2q")
DOCUMENT_SIDE: tuple[str, ...] = ("d2q", "d2d")
PRESETS: tuple[str, ...] = ("mnrl", "mnrl_dual", "samtone_query", "samtone_both", "gte_joint")
PARTITIONS: tuple[str, ...] = ("joint", "by_anchor")


def suggest(value: str, valid: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the nearest valid name, or ''."""
    close = difflib.get_close_matches(str(value), list(valid), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def canonical_block(name: str, option: str = "directions") -> str:
    if name in BLOCKS:
        return name
    if name in BLOCK_ALIASES:
        return BLOCK_ALIASES[name]
    valid = list(BLOCKS) + list(BLOCK_ALIASES)
    raise ConfigError(
        f"{option}: unknown direction {name!r}{suggest(name, valid)}; valid: {list(BLOCKS)}"
        f" (or {list(BLOCK_ALIASES)})"
    )


@dataclass(frozen=True)
class SoftmaxGroup:
    """Blocks sharing one softmax denominator, and the weight of that cross-entropy term."""

    blocks: tuple[str, ...]
    weight: float = 1.0

    def describe(self) -> str:
        return f"{self.weight:g}*[{', '.join(self.blocks)}]"


def preset_groups(preset: str, dual_weight: float = 1.0) -> tuple[SoftmaxGroup, ...]:
    """The softmax groups of a named preset (λ = ``dual_weight`` weighs the document side)."""
    table = {
        "mnrl": (SoftmaxGroup(("q2d",)),),
        "mnrl_dual": (SoftmaxGroup(("q2d",)), SoftmaxGroup(("d2q",), dual_weight)),
        "samtone_query": (SoftmaxGroup(("q2d", "q2q")),),
        "samtone_both": (SoftmaxGroup(("q2d", "q2q")), SoftmaxGroup(("d2q", "d2d"), dual_weight)),
        "gte_joint": (SoftmaxGroup(("q2d", "q2q", "d2q", "d2d")),),
    }
    if preset not in table:
        raise ConfigError(
            f"preset: unknown preset {preset!r}{suggest(preset, PRESETS)}; valid: {list(PRESETS)}"
        )
    return table[preset]


def direction_groups(
    directions: Sequence[str], partition: str = "by_anchor", dual_weight: float = 1.0
) -> tuple[SoftmaxGroup, ...]:
    """Groups from a flat list of directions.

    ``partition='joint'``: one softmax over all blocks (GTE). ``'by_anchor'``: one softmax per
    anchor tower, query side [q2d, q2q] + λ·document side [d2q, d2d], summed (SamToNe / DANCE).
    """
    if partition not in PARTITIONS:
        raise ConfigError(
            f"partition: unknown value {partition!r}{suggest(partition, PARTITIONS)}; valid: {list(PARTITIONS)}"
        )
    if not directions:
        raise ConfigError("directions: at least one direction is required")
    blocks = [canonical_block(d) for d in directions]
    dupes = sorted({b for b in blocks if blocks.count(b) > 1})
    if dupes:
        raise ConfigError(f"directions: {dupes} listed more than once")
    ordered = tuple(b for b in BLOCKS if b in blocks)
    if partition == "joint":
        return (SoftmaxGroup(ordered),)
    groups = []
    q_side = tuple(b for b in ordered if b in QUERY_SIDE)
    d_side = tuple(b for b in ordered if b in DOCUMENT_SIDE)
    if q_side:
        groups.append(SoftmaxGroup(q_side))
    if d_side:
        groups.append(SoftmaxGroup(d_side, dual_weight))
    return tuple(groups)


def _or(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


class _Part:
    """Scores of one slab of candidates for every anchor, and which entries to drop."""

    __slots__ = ("scores", "drop")

    def __init__(self, scores: Tensor, drop: Tensor | None = None) -> None:
        self.scores = scores
        self.drop = drop

    def lse(self) -> Tensor:
        s = self.scores if self.drop is None else self.scores.masked_fill(self.drop, float("-inf"))
        return torch.logsumexp(s, dim=-1)


class ContrastiveLoss(EmbeddingLoss):
    """InfoNCE over explicit blocks and softmax groups (see the module docstring).

    Give exactly one of ``groups``, ``preset`` or ``directions`` (none: ``preset='mnrl'``).

    Args:
        groups: explicit softmax groups, e.g. ``[SoftmaxGroup(("q2d", "q2q")), SoftmaxGroup(("d2q", "d2d"), 0.5)]``
            (tuples ``(blocks, weight)`` are accepted).
        preset: one of ``mnrl``, ``mnrl_dual``, ``samtone_query``, ``samtone_both``, ``gte_joint``.
        directions: blocks to use, grouped by ``partition``.
        partition: ``by_anchor`` (default: query-side and document-side softmaxes summed) or ``joint``.
        dual_weight: λ, the weight of the document-side softmax for ``by_anchor`` and for the
            ``mnrl_dual`` / ``samtone_both`` presets (DANCE used 0.1).
        temperature: τ (scale = 1/τ); 0.05 = sentence-transformers' scale 20.
        similarity: ``cosine`` or ``dot``.
        share_hard_negatives, share_negative_queries, d2d_own_hard_negatives, mask_false_negatives:
            see the module docstring.
        layout: what the batches will contain; when given, impossible configurations are refused now.
    """

    name = "contrastive"

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
        layout: BatchLayout | None = None,
    ) -> None:
        super().__init__()
        given = [
            k
            for k, v in (("groups", groups), ("preset", preset), ("directions", directions))
            if v is not None
        ]
        if len(given) > 1:
            raise ConfigError(f"{' and '.join(given)}: give only one way to declare the objective")
        dual_weight = check_weight(dual_weight, "dual_weight")
        if groups is not None:
            resolved = []
            if not groups:
                raise ConfigError("groups: at least one softmax group is required")
            for gi, g in enumerate(groups):
                if not isinstance(g, SoftmaxGroup):
                    blocks, weight = g
                    g = SoftmaxGroup(tuple(blocks), weight)
                blocks = tuple(canonical_block(b, f"groups[{gi}].blocks") for b in g.blocks)
                if not blocks:
                    raise ConfigError(f"groups[{gi}].blocks: a group needs at least one block")
                if len(set(blocks)) != len(blocks):
                    raise ConfigError(
                        f"groups[{gi}].blocks: a block is listed twice in {list(blocks)}"
                    )
                resolved.append(
                    SoftmaxGroup(blocks, check_weight(g.weight, f"groups[{gi}].weight"))
                )
            self.groups = tuple(resolved)
        elif directions is not None:
            self.groups = direction_groups(directions, partition, dual_weight)
        else:
            self.groups = preset_groups(preset or "mnrl", dual_weight)
        for gi, g in enumerate(self.groups):
            if "q2d" not in g.blocks and "d2q" not in g.blocks:
                side = "document-side" if set(g.blocks) <= set(DOCUMENT_SIDE) else "query-side"
                hint = "add d2q" if side == "document-side" else "add q2d"
                raise ConfigError(
                    f"groups[{gi}] {g.describe()}: this {side} softmax has neither q2d nor d2q, so it never"
                    f" contains the positive pair s(q_i, d_i); {hint} or use partition='joint'"
                )
        if all(g.weight == 0 for g in self.groups):
            raise ConfigError(
                "weight: every softmax group has weight 0, the loss would be constant"
            )
        self.temperature = check_temperature(temperature, "temperature")
        self.similarity = check_similarity(similarity)
        self.share_hard_negatives = bool(share_hard_negatives)
        self.share_negative_queries = bool(share_negative_queries)
        self.d2d_own_hard_negatives = bool(d2d_own_hard_negatives)
        self.mask_false_negatives = bool(mask_false_negatives)
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
    def compute_loss_from_embeddings(self, batch: EmbeddingBatch) -> Tensor:
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

        ids = self._ids(batch, idx) if self.mask_false_negatives else None
        lse: dict[str, Tensor] = {}
        pos: Tensor | None = None
        for block in self.blocks:
            if block == "q2d":
                parts, pos_q = self._doc_block(Qa, P, H, batch, idx, ar, ids, is_d2d=False)
                pos = pos_q
            elif block == "d2d":
                parts, _ = self._doc_block(Pa, P, H, batch, idx, ar, ids, is_d2d=True)
            elif block == "d2q":
                parts, pos_d = self._query_block(Pa, Q, NQ, batch, idx, ar, ids, is_d2q=True)
                pos = pos if pos is not None else pos_d
            else:
                parts, _ = self._query_block(Qa, Q, None, batch, idx, ar, ids, is_d2q=False)
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

    # -- helpers -------------------------------------------------------------------
    def _ids(self, batch: EmbeddingBatch, idx: Tensor) -> dict[str, Tensor | None] | None:
        if (
            batch.positive_ids is None
            and batch.query_ids is None
            and batch.query_positive_ids is None
        ):
            return None
        r = batch.num_rows
        dev = batch.queries.device

        def unknown(*shape: int) -> Tensor:
            return torch.full(shape, -1, dtype=torch.long, device=dev)

        pid = batch.positive_ids.long() if batch.positive_ids is not None else unknown(r)
        qid = batch.query_ids.long() if batch.query_ids is not None else unknown(r)
        qpos = (
            batch.query_positive_ids.long()
            if batch.query_positive_ids is not None
            else unknown(r, 0)
        )

        # Padding slots get id -1 so they can neither be forbidden nor shadow a real copy as "first".
        def block_ids(embeddings, ids, mask):
            if embeddings is None:
                return None
            out = ids.long() if ids is not None else unknown(r, embeddings.shape[1])
            return out.masked_fill(~mask, -1) if mask is not None else out

        hid = block_ids(batch.hard_negatives, batch.hard_negative_ids, batch.hard_negatives_mask)
        nqid = block_ids(
            batch.negative_queries, batch.negative_query_ids, batch.negative_queries_mask
        )
        return {
            "pid": pid,
            "qid": qid,
            "qpos": qpos,
            "hid": hid,
            "nqid": nqid,
            # Documents that are not negatives of anchor row i: d_i itself and q_i's known positives.
            "doc_forbidden": torch.cat([pid[idx].unsqueeze(1), qpos[idx]], dim=1),
        }

    def _doc_block(self, A, P, H, batch, idx, ar, ids, *, is_d2d: bool):
        """q2d (A = scaled queries) or d2d (A = scaled positives) against the document pool."""
        r = P.shape[0]
        n = A.shape[0]
        s_pos = A @ P.T  # (n, R); column idx[i] is d_i
        pos = s_pos[ar, idx]
        own_col: Tensor | None = None
        if is_d2d or ids is not None:  # plain MNRL needs no mask at all
            own_col = torch.zeros(n, r, dtype=torch.bool, device=A.device)
            own_col[ar, idx] = True  # the positive slot (q2d) / self (d2d)
        drop_pos: Tensor | None = own_col if is_d2d else None
        parts_h: _Part | None = None
        hmask = batch.hard_negatives_mask
        if H is not None and H.shape[1] > 0:
            k = H.shape[1]
            if self.share_hard_negatives:
                s_h = A @ H.reshape(-1, H.shape[-1]).T  # (n, R*K)
                drop_h = None if hmask is None else ~hmask.reshape(1, -1)
                if is_d2d and not self.d2d_own_hard_negatives:
                    owner = torch.arange(r, device=A.device).repeat_interleave(k)
                    drop_h = _or(drop_h, owner.unsqueeze(0) == idx.unsqueeze(1))
                parts_h = _Part(s_h, drop_h)
            elif not is_d2d or self.d2d_own_hard_negatives:
                s_h = torch.einsum("nd,nkd->nk", A, H[batch.anchor_slice])
                parts_h = _Part(s_h, None if hmask is None else ~hmask[batch.anchor_slice])
        if ids is not None:
            assert own_col is not None
            pid, forbidden = ids["pid"], ids["doc_forbidden"]
            if parts_h is None:
                block_ids = pid.unsqueeze(0)
                dup = first_occurrence_duplicates(pid).unsqueeze(0)
            elif self.share_hard_negatives:
                flat = torch.cat([pid, ids["hid"].reshape(-1)])
                block_ids = flat.unsqueeze(0)
                dup = first_occurrence_duplicates(flat).unsqueeze(0)
            else:
                own = ids["hid"][batch.anchor_slice]
                block_ids = torch.cat([pid.unsqueeze(0).expand(n, r), own], dim=1)
                dup = first_occurrence_duplicates(block_ids)
            fn = id_in(block_ids, forbidden) | dup
            fn[:, :r][ar, idx] = False  # the positive slot is never a false negative of itself
            drop_pos = _or(drop_pos, fn[:, :r])
            if parts_h is not None:
                parts_h.drop = _or(parts_h.drop, fn[:, r:])
        parts = [_Part(s_pos, drop_pos)]
        if parts_h is not None:
            parts.append(parts_h)
        return parts, pos

    def _query_block(self, A, Q, NQ, batch, idx, ar, ids, *, is_d2q: bool):
        """d2q (A = scaled positives, plus negative queries) or q2q (A = scaled queries)."""
        r = Q.shape[0]
        n = A.shape[0]
        s_q = A @ Q.T  # (n, R); column idx[i] is q_i
        pos = s_q[ar, idx]
        own_col = torch.zeros(n, r, dtype=torch.bool, device=A.device)
        own_col[ar, idx] = True
        drop_q: Tensor | None = None if is_d2q else own_col
        part_nq: _Part | None = None
        nqmask = batch.negative_queries_mask
        if is_d2q and NQ is not None and NQ.shape[1] > 0:
            if self.share_negative_queries:
                part_nq = _Part(
                    A @ NQ.reshape(-1, NQ.shape[-1]).T,
                    None if nqmask is None else ~nqmask.reshape(1, -1),
                )
            else:
                part_nq = _Part(
                    torch.einsum("nd,nmd->nm", A, NQ[batch.anchor_slice]),
                    None if nqmask is None else ~nqmask[batch.anchor_slice],
                )
        if ids is not None:
            qid = ids["qid"]
            forbidden = qid[idx].unsqueeze(1)  # the anchor row's own query id
            if part_nq is None:
                block_ids = qid.unsqueeze(0)
                dup = first_occurrence_duplicates(qid).unsqueeze(0)
            elif self.share_negative_queries:
                flat = torch.cat([qid, ids["nqid"].reshape(-1)])
                block_ids = flat.unsqueeze(0)
                dup = first_occurrence_duplicates(flat).unsqueeze(0)
            else:
                block_ids = torch.cat(
                    [qid.unsqueeze(0).expand(n, r), ids["nqid"][batch.anchor_slice]], dim=1
                )
                dup = first_occurrence_duplicates(block_ids)
            fn = id_in(block_ids, forbidden) | dup
            if is_d2q:
                # q_j is a positive of d_i if d_i is q_j's positive or one of q_j's known positives.
                pid, qpos = ids["pid"], ids["qpos"]
                d_id = pid[idx].unsqueeze(1)  # (n, 1)
                rel = pid.unsqueeze(0) == d_id
                for col in range(qpos.shape[1]):
                    rel |= qpos[:, col].unsqueeze(0) == d_id
                fn[:, :r] |= rel & (d_id >= 0)
            fn[:, :r][ar, idx] = False
            drop_q = _or(drop_q, fn[:, :r])
            if part_nq is not None:
                part_nq.drop = _or(part_nq.drop, fn[:, r:])
        parts = [_Part(s_q, drop_q)]
        if part_nq is not None:
            parts.append(part_nq)
        return parts, pos

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
        }

    def extra_repr(self) -> str:
        return (
            " + ".join(g.describe() for g in self.groups)
            + f", temperature={self.temperature:g}, similarity={self.similarity}"
        )

    @property
    def citation(self) -> str:
        cites = [_CITE_INFONCE]
        if "d2q" in self.blocks:
            cites.append(CITE_DANCE)
        joint4 = any(set(g.blocks) == set(BLOCKS) for g in self.groups)
        if joint4:
            cites.append(_CITE_GTE)
        elif "q2q" in self.blocks or "d2d" in self.blocks:
            cites.append(_CITE_SAMTONE)
        return "\n".join(cites)


_CITE_INFONCE = """@misc{oord2019representationlearningcontrastivepredictive,
      title={Representation Learning with Contrastive Predictive Coding},
      author={Aaron van den Oord and Yazhe Li and Oriol Vinyals},
      year={2019}, eprint={1807.03748}, archivePrefix={arXiv}, primaryClass={cs.LG},
      url={https://arxiv.org/abs/1807.03748},
}"""
_CITE_SAMTONE = """@inproceedings{moiseev2023samtone,
      title={SamToNe: Improving Contrastive Loss for Dual Encoder Retrieval Models with Same Tower Negatives},
      author={Fedor Moiseev and Gustavo Hernandez Abrego and Peter Dornbach and Imed Zitouni and Enrique Alfonseca and Zhe Dong},
      booktitle={Findings of the Association for Computational Linguistics: ACL 2023},
      year={2023}, eprint={2306.02516}, archivePrefix={arXiv},
}"""
_CITE_GTE = """@misc{li2023generaltextembeddingsmultistage,
      title={Towards General Text Embeddings with Multi-stage Contrastive Learning},
      author={Zehan Li and Xin Zhang and Yanzhao Zhang and Dingkun Long and Pengjun Xie and Meishan Zhang},
      year={2023}, eprint={2308.03281}, archivePrefix={arXiv}, primaryClass={cs.CL},
      url={https://arxiv.org/abs/2308.03281},
}"""

__all__ = [
    "BLOCKS",
    "BLOCK_ALIASES",
    "PRESETS",
    "Block",
    "ContrastiveLoss",
    "SoftmaxGroup",
    "direction_groups",
    "preset_groups",
]

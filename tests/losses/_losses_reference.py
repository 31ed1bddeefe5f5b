"""Loop-based transcriptions of the loss formulas, for the tests.

InfoNCE (van den Oord et al. 2018) with DANCE's dual (Li et al. 2021), SamToNe's same-tower
negatives (Moiseev et al. 2023) and GTE's joint softmax (Li et al. 2023); Margin-MSE
(Hofstätter et al. 2020); listwise KL distillation (Tamber et al. 2025).

Deliberately naive: plain Python loops over rows i and candidates j, scalar math, no masking
tricks. Ids < 0 mean "unknown". Used only on tiny float64 batches.
"""

from __future__ import annotations

import math

import torch

from twotower.losses import EmbeddingBatch


def sim(a: torch.Tensor, b: torch.Tensor, kind: str) -> float:
    dot = sum(float(x) * float(y) for x, y in zip(a.tolist(), b.tolist(), strict=True))
    if kind == "dot":
        return dot
    na = math.sqrt(sum(float(x) ** 2 for x in a.tolist()))
    nb = math.sqrt(sum(float(y) ** 2 for y in b.tolist()))
    return dot / (max(na, 1e-12) * max(nb, 1e-12))


def logsumexp(xs: list[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def _get(t, *index, default=-1):
    return default if t is None else int(t[index].item()) if len(index) > 0 else default


def _anchors(b: EmbeddingBatch) -> range:
    n = b.num_rows - b.anchor_offset if b.num_anchors is None else b.num_anchors
    return range(b.anchor_offset, b.anchor_offset + n)


def _valid(mask, i, k) -> bool:
    return True if mask is None else bool(mask[i, k])


def _select(cands, forbidden):
    """cands: (vector, id, is_positive, excluded). Keep non-excluded ones that are the positive, or
    whose id is neither forbidden nor a repeat of an earlier id in the list."""
    seen: set[int] = set()
    out = []
    for vec, cid, is_pos, excluded in cands:
        dup = cid >= 0 and cid in seen
        if cid >= 0:
            seen.add(cid)
        if excluded:
            continue
        if is_pos or not ((cid >= 0 and cid in forbidden) or dup):
            out.append(vec)
    return out


def ref_contrastive(
    b: EmbeddingBatch,
    groups: list[tuple[tuple[str, ...], float]],
    *,
    tau: float = 0.05,
    similarity: str = "cosine",
    share_hn: bool = True,
    share_nq: bool = False,
    d2d_own: bool = False,
    mask_fn: bool = True,
) -> float:
    R = b.num_rows
    K = 0 if b.hard_negatives is None else b.hard_negatives.shape[1]
    M = 0 if b.negative_queries is None else b.negative_queries.shape[1]
    use_ids = mask_fn and any(
        x is not None for x in (b.positive_ids, b.query_ids, b.query_positive_ids)
    )

    def pid(j):
        return _get(b.positive_ids, j) if use_ids else -1

    def qid(j):
        return _get(b.query_ids, j) if use_ids else -1

    def hid(j, k):
        return (
            _get(b.hard_negative_ids, j, k)
            if use_ids and _valid(b.hard_negatives_mask, j, k)
            else -1
        )

    def nqid(j, m):
        return (
            _get(b.negative_query_ids, j, m)
            if use_ids and _valid(b.negative_queries_mask, j, m)
            else -1
        )

    def qpos(j):
        if not use_ids or b.query_positive_ids is None:
            return set()
        return {int(x) for x in b.query_positive_ids[j].tolist() if x >= 0}

    def block_scores(block: str, g: int) -> list[float]:
        if block in ("q2d", "d2d"):
            anchor = b.queries[g] if block == "q2d" else b.positives[g]
            cands = []
            for j in range(R):
                cands.append(
                    (b.positives[j], pid(j), block == "q2d" and j == g, block == "d2d" and j == g)
                )
            rows = range(R) if share_hn else [g]
            for j in rows:
                for k in range(K):
                    if not _valid(b.hard_negatives_mask, j, k):
                        cands.append((None, -1, False, True))
                        continue
                    excluded = block == "d2d" and j == g and not d2d_own
                    cands.append((b.hard_negatives[j, k], hid(j, k), False, excluded))
            forbidden = ({pid(g)} | qpos(g)) - {-1}
            return [sim(anchor, c, similarity) / tau for c in _select(cands, forbidden)]
        if block == "q2q":
            cands = [(b.queries[j], qid(j), False, j == g) for j in range(R)]
            return [sim(b.queries[g], c, similarity) / tau for c in _select(cands, {qid(g)} - {-1})]
        # d2q
        cands = []
        for j in range(R):
            related = pid(g) >= 0 and (pid(j) == pid(g) or pid(g) in qpos(j))
            # q_j relevant to d_g is never its negative (its id still counts as seen for duplicates)
            cands.append((b.queries[j], qid(j), j == g, j != g and related))
        rows = range(R) if share_nq else [g]
        for j in rows:
            for m in range(M):
                if not _valid(b.negative_queries_mask, j, m):
                    cands.append((None, -1, False, True))
                    continue
                cands.append((b.negative_queries[j, m], nqid(j, m), False, False))
        return [sim(b.positives[g], c, similarity) / tau for c in _select(cands, {qid(g)} - {-1})]

    total = 0.0
    anchors = _anchors(b)
    for blocks, w in groups:
        acc = 0.0
        for g in anchors:
            pos = sim(b.queries[g], b.positives[g], similarity) / tau
            z: list[float] = []
            for block in blocks:
                z += block_scores(block, g)
            acc += logsumexp(z) - pos
        total += w * acc / len(anchors)
    return total


def ref_margin_mse(
    b: EmbeddingBatch,
    *,
    similarity: str = "dot",
    dual_weight: float = 0.0,
    dual_negatives: str = "mined",
) -> float:
    anchors = _anchors(b)
    K = b.hard_negatives.shape[1]
    se, cnt = 0.0, 0
    for i in anchors:
        sp = sim(b.queries[i], b.positives[i], similarity)
        for k in range(K):
            if not _valid(b.hard_negatives_mask, i, k):
                continue
            sn = sim(b.queries[i], b.hard_negatives[i, k], similarity)
            t = float(b.teacher_positive_scores[i]) - float(b.teacher_negative_scores[i, k])
            se += ((sp - sn) - t) ** 2
            cnt += 1
    loss = se / cnt if cnt else 0.0
    if dual_weight == 0:
        return loss
    se, cnt = 0.0, 0
    for i in anchors:
        sp = sim(b.positives[i], b.queries[i], similarity)
        if dual_negatives == "mined":
            for m in range(b.negative_queries.shape[1]):
                if not _valid(b.negative_queries_mask, i, m):
                    continue
                sn = sim(b.positives[i], b.negative_queries[i, m], similarity)
                t = float(b.teacher_positive_scores[i]) - float(
                    b.teacher_negative_query_scores[i, m]
                )
                se += ((sp - sn) - t) ** 2
                cnt += 1
        else:
            T = b.teacher_pair_scores
            for j in range(b.num_rows):
                if j == i or math.isnan(float(T[j, i])):
                    continue
                if (
                    b.query_ids is not None
                    and b.query_ids[i] >= 0
                    and b.query_ids[j] == b.query_ids[i]
                ):
                    continue
                if (
                    b.positive_ids is not None
                    and b.positive_ids[i] >= 0
                    and b.positive_ids[j] == b.positive_ids[i]
                ):
                    continue
                sn = sim(b.positives[i], b.queries[j], similarity)
                t = float(T[i, i]) - float(T[j, i])
                se += ((sp - sn) - t) ** 2
                cnt += 1
    return loss + dual_weight * (se / cnt if cnt else 0.0)


def ref_listwise(
    b: EmbeddingBatch,
    *,
    ts: float = 0.05,
    tt: float = 0.3,
    w_con: float = 0.1,
    tau: float = 0.01,
    ratio: float | None = 0.6,
    similarity: str = "cosine",
    t2: bool = False,
) -> float:
    # Candidate lists as python lists of (vector, teacher score, id) per row; absent slots dropped.
    lists = []
    for i in range(b.num_rows):
        row = []
        if b.candidates is not None:
            for p in range(b.candidates.shape[1]):
                t = float(b.candidate_teacher_scores[i, p])
                if _valid(b.candidates_mask, i, p) and math.isfinite(t):
                    row.append((b.candidates[i, p], t, _get(b.candidate_ids, i, p), p))
        else:
            row.append(
                (b.positives[i], float(b.teacher_positive_scores[i]), _get(b.positive_ids, i), 0)
            )
            for k in range(b.hard_negatives.shape[1]):
                t = float(b.teacher_negative_scores[i, k])
                if _valid(b.hard_negatives_mask, i, k) and math.isfinite(t):
                    hid = _get(b.hard_negative_ids, i, k) if b.hard_negative_ids is not None else -1
                    row.append((b.hard_negatives[i, k], t, hid, k + 1))
        lists.append(row)
    anchors = [i for i in _anchors(b) if lists[i]]
    kl_sum = 0.0
    for i in anchors:
        s = [sim(b.queries[i], c, similarity) / ts for c, _, _, _ in lists[i]]
        t = [tv / tt for _, tv, _, _ in lists[i]]
        ls, lt = logsumexp(s), logsumexp(t)
        for sj, tj in zip(s, t, strict=True):
            pt = math.exp(tj - lt)
            kl_sum += pt * ((tj - lt) - (sj - ls))
    loss = kl_sum / len(anchors)
    if t2:
        loss *= ts**2
    if w_con == 0:
        return loss
    con = 0.0
    for i in anchors:
        row = lists[i]
        top = max(range(len(row)), key=lambda j: (row[j][1], -row[j][3]))  # first max in slot order
        top_t = row[top][1]
        near_slots = {
            row[j][3] for j in range(len(row)) if ratio is not None and row[j][1] > ratio * top_t
        }
        near_slots.add(row[top][3])
        forbidden = {
            row[j][2] for j in range(len(row)) if row[j][3] in near_slots and row[j][2] >= 0
        }
        pos = sim(b.queries[i], row[top][0], similarity) / tau
        z = []
        seen: set[int] = set()
        for r in range(b.num_rows):
            for c, _, cid, slot in lists[r]:
                dup = cid >= 0 and cid in seen
                if cid >= 0:
                    seen.add(cid)
                if r == i and slot == row[top][3]:
                    z.append(pos)
                    continue
                if r == i and slot in near_slots:
                    continue
                if (cid >= 0 and cid in forbidden) or dup:
                    continue
                z.append(sim(b.queries[i], c, similarity) / tau)
        con += logsumexp(z) - pos
    return loss + w_con * con / len(anchors)

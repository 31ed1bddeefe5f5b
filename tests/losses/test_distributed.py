"""Negatives gathered across processes: a 2-process step (gloo, CPU) against one process on the
combined batch. The loss and every parameter's gradient must agree to 1e-5 (DDP averages the
gradients over ranks; each rank averages its loss over its own anchors)."""

from __future__ import annotations

import dataclasses
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from tests.losses.test_losses_sentence_transformers import TEXTS, model  # noqa: F401 (a fixture)
from twotower.losses import SentenceTransformerLoss
from twotower.losses.batch import EmbeddingBatch
from twotower.losses.contrastive import ContrastiveLoss
from twotower.losses.distributed import gather_across_ranks

WORLD, ROWS, K, M, DIM = 2, 3, 2, 1, 8  # ROWS per rank
LOSSES = {
    "mnrl with hard negatives": {"preset": "mnrl"},
    "mnrl_dual (d2q) with negative queries": {"preset": "mnrl_dual", "dual_weight": 0.5},
    "samtone_both (q2q, d2d self-excluded)": {"preset": "samtone_both"},
    "gte_joint": {"preset": "gte_joint"},
}


def _data(seed: int = 0):
    """Inputs of the combined batch (WORLD * ROWS rows) and its ids, with false negatives across
    ranks: row 4's hard negative is row 1's positive, and query 5 repeats query 0."""
    g = torch.Generator().manual_seed(seed)
    n = WORLD * ROWS
    x = {
        "queries": torch.randn(n, 16, generator=g),
        "positives": torch.randn(n, 16, generator=g),
        "hard_negatives": torch.randn(n, K, 16, generator=g),
        "negative_queries": torch.randn(n, M, 16, generator=g),
    }
    x["hard_negatives"][4, 0] = x["positives"][1]
    x["queries"][5] = x["queries"][0]
    ids = {
        "query_ids": torch.tensor([0, 1, 2, 3, 4, 0]),
        "positive_ids": torch.tensor([10, 11, 12, 13, 14, 15]),
        "hard_negative_ids": torch.tensor(
            [[20, 21], [22, 23], [24, 25], [26, 27], [11, 28], [29, 30]]
        ),
        "negative_query_ids": torch.tensor([[3], [4], [0], [1], [2], [3]]),
        "query_positive_ids": torch.tensor(
            [[10, 15], [11, -1], [12, -1], [13, -1], [14, -1], [10, 15]]
        ),
    }
    return x, ids


def _encoder() -> torch.nn.Linear:
    torch.manual_seed(1)
    return torch.nn.Linear(16, DIM)


def _batch(encoder, x, ids, rows: slice) -> EmbeddingBatch:
    def embed(t):
        return F.normalize(encoder(t[rows]), dim=-1)

    return EmbeddingBatch(
        queries=embed(x["queries"]),
        positives=embed(x["positives"]),
        hard_negatives=embed(x["hard_negatives"]),
        negative_queries=embed(x["negative_queries"]),
        **{name: value[rows] for name, value in ids.items()},
    )


def _single_process(options: dict) -> tuple[float, dict[str, torch.Tensor]]:
    encoder = _encoder()
    x, ids = _data()
    loss = ContrastiveLoss(**options).compute_loss_from_batch(_batch(encoder, x, ids, slice(None)))
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in encoder.named_parameters()}


def _worker(rank: int, port: int, options: dict, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        encoder = _encoder()
        x, ids = _data()
        local = _batch(encoder, x, ids, slice(rank * ROWS, (rank + 1) * ROWS))
        loss = ContrastiveLoss(**options).compute_loss_from_batch(gather_across_ranks(local))
        loss.backward()
        _report_mean(rank, loss, encoder.named_parameters(), out)
    finally:
        dist.destroy_process_group()


def _report_mean(rank: int, loss, named_parameters, out: dict) -> None:
    """What DistributedDataParallel does: the mean of the ranks' gradients (and losses), put in
    ``out`` by rank 0 (name → gradient)."""
    grads = {n: p.grad.clone() for n, p in named_parameters if p.grad is not None}
    for g in grads.values():
        dist.all_reduce(g)
        g /= WORLD
    value = loss.detach().clone()
    dist.all_reduce(value)
    if rank == 0:
        out["loss"], out["grads"] = value.item() / WORLD, grads


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("options", list(LOSSES.values()), ids=list(LOSSES))
def test_two_processes_equal_one_process_on_the_combined_batch(options):
    expected_loss, expected_grads = _single_process(options)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(_free_port(), options, out), nprocs=WORLD, join=True)
        loss, grads = out["loss"], dict(out["grads"])
    assert loss == pytest.approx(expected_loss, abs=1e-5)
    assert grads.keys() == expected_grads.keys()
    for name, want in expected_grads.items():
        torch.testing.assert_close(grads[name], want, atol=1e-5, rtol=1e-4)


def _uneven_data():
    """The combined batch where rank 1's rows have one hard negative (rank 0's two) and one
    known positive each (rank 0's up to two): as one process, rank 1's second slots are masked
    padding."""
    x, ids = _data()
    ids["query_positive_ids"][5] = torch.tensor([15, -1])
    mask = torch.ones(WORLD * ROWS, K, dtype=torch.bool)
    mask[ROWS:, 1] = False
    return x, ids, mask


def _uneven_local(encoder, rank: int) -> EmbeddingBatch:
    x, ids, _ = _uneven_data()
    batch = _batch(encoder, x, ids, slice(rank * ROWS, (rank + 1) * ROWS))
    if rank == 0:
        return batch
    return dataclasses.replace(
        batch,
        hard_negatives=batch.hard_negatives[:, :1],
        hard_negative_ids=batch.hard_negative_ids[:, :1],
        query_positive_ids=batch.query_positive_ids[:, :1],
    )


def _uneven_worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        encoder = _encoder()
        local = _uneven_local(encoder, rank)
        loss = ContrastiveLoss(preset="mnrl").compute_loss_from_batch(gather_across_ranks(local))
        loss.backward()
        _report_mean(rank, loss, encoder.named_parameters(), out)
    finally:
        dist.destroy_process_group()


def test_ranks_with_blocks_of_different_widths_are_padded_to_the_widest():
    encoder = _encoder()
    x, ids, mask = _uneven_data()
    combined = dataclasses.replace(_batch(encoder, x, ids, slice(None)), hard_negatives_mask=mask)
    loss = ContrastiveLoss(preset="mnrl").compute_loss_from_batch(combined)
    loss.backward()
    expected = {n: p.grad.clone() for n, p in encoder.named_parameters()}
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_uneven_worker, args=(_free_port(), out), nprocs=WORLD, join=True)
        got_loss, grads = out["loss"], dict(out["grads"])
    assert got_loss == pytest.approx(loss.item(), abs=1e-5)
    for name, want in expected.items():
        torch.testing.assert_close(grads[name], want, atol=1e-5, rtol=1e-4)


def test_one_process_is_left_as_it_is():
    x, ids = _data()
    batch = _batch(_encoder(), x, ids, slice(None))
    assert gather_across_ranks(batch) is batch


def _cached_worker(rank: int, port: int, path: str, out: dict) -> None:
    from sentence_transformers import SentenceTransformer

    from twotower.losses import CachedSentenceTransformerLoss

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = SentenceTransformer(path, device="cpu")
        model.eval()  # no dropout: the passes are comparable
        loss = CachedSentenceTransformerLoss(
            model, [{"loss": "contrastive", "preset": "mnrl"}], mini_batch_size=1
        )
        half = len(TEXTS["anchor"]) // WORLD
        rows = slice(rank * half, (rank + 1) * half)
        features = [model.tokenize(TEXTS[c][rows]) for c in ("anchor", "positive", "negative_1")]
        value = loss(features, None)
        value.backward()
        _report_mean(rank, value, model.named_parameters(), out)
    finally:
        dist.destroy_process_group()


def test_the_gradient_cached_loss_gathers_across_processes_too(model, tmp_path):  # noqa: F811
    st = model
    path = str(tmp_path / "st")
    st.save(path)
    full = SentenceTransformerLoss(st, [{"loss": "contrastive", "preset": "mnrl"}])
    value = full([st.tokenize(TEXTS[c]) for c in ("anchor", "positive", "negative_1")], None)
    value.backward()
    expected = {n: p.grad.clone() for n, p in st.named_parameters() if p.grad is not None}
    st.zero_grad()  # the model is a module fixture
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_cached_worker, args=(_free_port(), path, out), nprocs=WORLD, join=True)
        loss, grads = out["loss"], dict(out["grads"])
    assert loss == pytest.approx(value.item(), rel=1e-5)
    assert grads.keys() == expected.keys()
    scale = max(g.abs().max().item() for g in expected.values())
    for name, grad in expected.items():
        torch.testing.assert_close(
            grads[name], grad, rtol=1e-4, atol=1e-4 * scale, msg=lambda m, n=name: f"{n}: {m}"
        )


class _QueryTower(torch.nn.Module):
    """A stand-in for a SentenceTransformer: features {"x"} → {"sentence_embedding"}."""

    def __init__(self):
        super().__init__()
        self.linear = _encoder()

    def forward(self, features):
        return {"sentence_embedding": F.normalize(self.linear(features["x"]), dim=-1)}


def _frozen_data():
    g = torch.Generator().manual_seed(3)
    documents = F.normalize(torch.randn(10, DIM, generator=g), dim=-1)
    x = torch.randn(WORLD * ROWS, 16, generator=g)
    # (positive row, 2 hard-negative rows, 2 known-positive rows); row 4's negative 7 is the
    # positive of row 1, and row 1 lists it as a known positive.
    labels = torch.tensor(
        [
            [0, 5, 6, 0, -1],
            [7, 8, 9, 7, -1],
            [1, 2, 3, 1, -1],
            [2, 4, 5, 2, -1],
            [3, 7, 6, 3, -1],
            [4, 0, 1, 4, -1],
        ]
    )
    return documents, x, labels


def _frozen_loss(documents):
    from twotower.losses.frozen_documents import FrozenDocumentsLoss

    return FrozenDocumentsLoss(
        _QueryTower(),
        documents,
        [{"loss": "contrastive", "preset": "mnrl"}],
        num_negatives=2,
        num_positive_ids=2,
    )


def _frozen_worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        documents, x, labels = _frozen_data()
        loss_fn = _frozen_loss(documents)
        rows = slice(rank * ROWS, (rank + 1) * ROWS)
        loss = loss_fn([{"x": x[rows]}], labels[rows])
        loss.backward()
        _report_mean(rank, loss, loss_fn.model.named_parameters(), out)
    finally:
        dist.destroy_process_group()


def test_the_frozen_document_index_path_gathers_across_processes():
    documents, x, labels = _frozen_data()
    loss_fn = _frozen_loss(documents)
    expected = loss_fn([{"x": x}], labels)
    expected.backward()
    expected_grads = {n: p.grad.clone() for n, p in loss_fn.model.named_parameters()}
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_frozen_worker, args=(_free_port(), out), nprocs=WORLD, join=True)
        loss, grads = out["loss"], dict(out["grads"])
    assert loss == pytest.approx(expected.item(), abs=1e-5)
    assert grads.keys() == expected_grads.keys()
    for name, want in expected_grads.items():
        torch.testing.assert_close(grads[name], want, atol=1e-5, rtol=1e-4)

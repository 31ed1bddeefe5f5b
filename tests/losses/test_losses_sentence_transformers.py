"""Parity with sentence-transformers' losses, and our losses as a plain ST loss module.

Where the definitions differ on purpose (checked below with the conversion):

* ``MultipleNegativesRankingLoss(partition_mode='per_direction')`` AVERAGES the per-direction
  cross-entropies; our ``by_anchor`` partition SUMS the query-side and document-side softmaxes
  (SamToNe's bidirectional loss, DANCE's L_q→d + λ·L_d→q). ST's per_direction with
  (query_to_doc, doc_to_query) = 0.5 × our ``mnrl_dual`` (λ = 1).
* ST's per_direction refuses query_to_query / doc_to_doc, so SamToNe-both (a sum of two
  softmaxes, each with a same-tower block) has no ST counterpart; it is covered by the
  loop-based reference tests only.
* ST's doc_to_doc drops d_i's own hard negatives: our default (``d2d_own_hard_negatives=False``)
  matches, the option adds them back.
* ``DistillKLDivLoss`` multiplies the KL by T_s² (Hinton et al.); Tamber et al.'s listwise loss
  does not. Ours = ST / T_s² by default, and = ST with ``temperature_squared_scaling=True``.
  ST's default similarity there is the dot product; the listwise paper (and our default) uses
  cosine — the parity test sets ``similarity='dot'``.
* ``MarginMSELoss``: identical (dot product, MSE over the (N, K) margins).
"""

from __future__ import annotations

import re

import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses
from sentence_transformers.util import dot_score

from twotower.errors import ConfigError
from twotower.losses import (
    ContrastiveLoss,
    EmbeddingBatch,
    ListwiseKLLoss,
    MarginMSELoss,
    SentenceTransformerLoss,
    SoftmaxGroup,
    build_loss,
)

TEXTS = {
    "anchor": [
        "small feline purrs",
        "safe systems language",
        "roasted coffee seeds",
        "green tea leaves",
    ],
    "positive": [
        "cats purr softly",
        "rust is a safe language",
        "coffee beans are roasted seeds",
        "tea is brewed from leaves",
    ],
    "negative_1": [
        "dogs bark at strangers",
        "python is popular",
        "tea is green",
        "coffee plant seeds",
    ],
    "negative_2": ["rust programming", "cats are small", "dogs are loyal", "python language"],
    "neg_query": [
        "loyal barking animal",
        "popular ml language",
        "brewed leaves",
        "small purring cat",
    ],
}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("losses-tiny-bert")
    words = sorted({w for col in TEXTS.values() for t in col for w in re.findall(r"\w+", t)})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *"abcdefghijklmnopqrstuvwxyz"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(
        vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=32
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=32,
    )
    BertModel(config).save_pretrained(folder / "hf")
    tokenizer.save_pretrained(folder / "hf")
    st = SentenceTransformer(
        modules=[Transformer(str(folder / "hf"), max_seq_length=32), Pooling(32, "mean")],
        device="cpu",
    )
    st.eval()  # no dropout: forward passes are comparable
    return st


def features(model, columns):
    return [model.tokenize(TEXTS[c]) for c in columns]


@pytest.fixture(scope="module")
def embeddings(model):
    with torch.no_grad():
        return {
            c: model(model.tokenize(t))["sentence_embedding"].double() for c, t in TEXTS.items()
        }


def _batch(emb, negs):
    return EmbeddingBatch(
        queries=emb["anchor"],
        positives=emb["positive"],
        hard_negatives=torch.stack([emb[c] for c in negs], 1) if negs else None,
    )


MNRL_CASES = [
    # (ST directions, ST partition_mode, our loss, factor): ST value = factor * ours
    (("query_to_doc",), "joint", dict(preset="mnrl"), 1.0),
    (
        ("query_to_doc", "doc_to_query"),
        "per_direction",
        dict(preset="mnrl_dual", dual_weight=1.0),
        0.5,
    ),
    (
        ("query_to_doc", "doc_to_query"),
        "joint",
        dict(directions=["q2d", "d2q"], partition="joint"),
        1.0,
    ),
    (("query_to_doc", "query_to_query"), "joint", dict(preset="samtone_query"), 1.0),
    (
        ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"),
        "joint",
        dict(preset="gte_joint"),
        1.0,
    ),
    (
        ("query_to_doc", "query_to_query", "doc_to_query"),
        "joint",
        dict(groups=[SoftmaxGroup(("q2d", "q2q", "d2q"))]),
        1.0,
    ),
    (
        ("query_to_doc", "doc_to_doc"),
        "joint",
        dict(directions=["q2d", "d2d"], partition="joint"),
        1.0,
    ),
]


@pytest.mark.parametrize("negs", [(), ("negative_1",), ("negative_1", "negative_2")])
@pytest.mark.parametrize("directions, partition, ours, factor", MNRL_CASES)
def test_mnrl_parity(model, embeddings, directions, partition, ours, factor, negs):
    st = st_losses.MultipleNegativesRankingLoss(
        model, scale=20.0, directions=directions, partition_mode=partition
    )
    cols = [embeddings["anchor"], embeddings["positive"], *[embeddings[c] for c in negs]]
    want = st.compute_loss_from_embeddings(cols, None).item()
    got = ContrastiveLoss(**ours, temperature=0.05)(_batch(embeddings, negs)).item()
    assert factor * got == pytest.approx(want, abs=1e-5)


def test_mnrl_parity_dot_product(model, embeddings):
    st = st_losses.MultipleNegativesRankingLoss(
        model, scale=1.0, similarity_fct=dot_score, directions=("query_to_doc", "doc_to_query")
    )
    cols = [embeddings["anchor"], embeddings["positive"], embeddings["negative_1"]]
    want = st.compute_loss_from_embeddings(cols, None).item()
    got = ContrastiveLoss(
        directions=["q2d", "d2q"], partition="joint", similarity="dot", temperature=1.0
    )(_batch(embeddings, ["negative_1"])).item()
    assert got == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("label_format", ["scores", "margins"])
@pytest.mark.parametrize("negs", [("negative_1",), ("negative_1", "negative_2")])
def test_margin_mse_parity(model, embeddings, negs, label_format):
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(4, 1 + len(negs), generator=g, dtype=torch.float64) * 10
    labels = scores if label_format == "scores" else scores[:, :1] - scores[:, 1:]
    cols = [embeddings["anchor"], embeddings["positive"], *[embeddings[c] for c in negs]]
    want = st_losses.MarginMSELoss(model).compute_loss_from_embeddings(cols, labels).item()
    ours = SentenceTransformerLoss(model, [{"loss": "margin_mse"}])
    got = ours.compute_loss_from_embeddings(cols, labels).item()
    assert got == pytest.approx(want, abs=1e-5)
    b = _batch(embeddings, negs)
    b.teacher_positive_scores, b.teacher_negative_scores = scores[:, 0], scores[:, 1:]
    assert MarginMSELoss()(b).item() == pytest.approx(want, abs=1e-5)


def test_margin_mse_single_margin_labels(model, embeddings):
    labels = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    cols = [embeddings["anchor"], embeddings["positive"], embeddings["negative_1"]]
    want = st_losses.MarginMSELoss(model).compute_loss_from_embeddings(cols, labels).item()
    got = (
        SentenceTransformerLoss(model, {"loss": "margin_mse"})
        .compute_loss_from_embeddings(cols, labels)
        .item()
    )
    assert got == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("ts, tt", [(1.0, 1.0), (0.05, 0.3)])
def test_distill_kl_parity(model, embeddings, ts, tt):
    g = torch.Generator().manual_seed(1)
    labels = torch.rand(4, 3, generator=g, dtype=torch.float64)
    cols = [
        embeddings["anchor"],
        embeddings["positive"],
        embeddings["negative_1"],
        embeddings["negative_2"],
    ]
    st = st_losses.DistillKLDivLoss(model, student_temperature=ts, teacher_temperature=tt)
    want = st.compute_loss_from_embeddings(cols, labels).item()
    spec = {
        "loss": "listwise_kl",
        "similarity": "dot",
        "contrastive_weight": 0.0,
        "student_temperature": ts,
        "teacher_temperature": tt,
    }
    scaled = SentenceTransformerLoss(model, [{**spec, "temperature_squared_scaling": True}])
    assert scaled.compute_loss_from_embeddings(cols, labels).item() == pytest.approx(want, abs=1e-5)
    # Tamber et al.'s definition (our default): no T_s² factor.
    plain = SentenceTransformerLoss(model, [spec]).compute_loss_from_embeddings(cols, labels).item()
    assert plain * ts**2 == pytest.approx(want, abs=1e-5)
    # Same objective through the pure embedding-level function.
    b = _batch(embeddings, ["negative_1", "negative_2"])
    b.teacher_positive_scores, b.teacher_negative_scores = labels[:, 0], labels[:, 1:]
    direct = ListwiseKLLoss(
        similarity="dot", contrastive_weight=0.0, student_temperature=ts, teacher_temperature=tt
    )
    assert direct(b).item() == pytest.approx(plain, abs=1e-9)


def test_forward_parity_through_the_model(model):
    """Same features through ST's MNRL and our module: same value (model in eval mode)."""
    cols = ["anchor", "positive", "negative_1"]
    st = st_losses.MultipleNegativesRankingLoss(
        model, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"
    )
    ours = SentenceTransformerLoss(
        model, [{"loss": "contrastive", "preset": "mnrl_dual", "weight": 0.5}]
    )
    with torch.no_grad():
        assert ours(features(model, cols), None).item() == pytest.approx(
            st(features(model, cols), None).item(), abs=1e-5
        )


def test_backward_through_st_module(model):
    """MMSE + MNRL-Dual in one line of config, DANCE negative queries in the last column."""
    loss = SentenceTransformerLoss(
        model,
        [
            {"loss": "margin_mse", "weight": 1.0, "dual_weight": 0.5},
            {"loss": "contrastive", "directions": ["q2d", "d2q"], "weight": 0.5},
        ],
        num_negative_query_columns=1,
    )
    model.zero_grad()
    labels = torch.rand(4, 3)  # T(q,d+), T(q,d-), T(q-,d+)
    value = loss(features(model, ["anchor", "positive", "negative_1", "neg_query"]), labels)
    value.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    # The module's value is the embedding-level function on the same embeddings.
    with torch.no_grad():
        emb = [
            model(f)["sentence_embedding"]
            for f in features(model, ["anchor", "positive", "negative_1", "neg_query"])
        ]
    b = EmbeddingBatch(
        queries=emb[0],
        positives=emb[1],
        hard_negatives=emb[2].unsqueeze(1),
        negative_queries=emb[3].unsqueeze(1),
        teacher_positive_scores=labels[:, 0],
        teacher_negative_scores=labels[:, 1:2],
        teacher_negative_query_scores=labels[:, 2:],
    )
    assert loss.objective.compute_loss_from_batch(b).item() == pytest.approx(value.item(), rel=1e-5)
    assert "Hofst" in loss.citation and "Contrastive Dual Learning" in loss.citation


def test_trainer_runs(model, tmp_path):
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )

    data = Dataset.from_dict(
        {
            "anchor": TEXTS["anchor"] * 2,
            "positive": TEXTS["positive"] * 2,
            "negative": TEXTS["negative_1"] * 2,
            "label": [[0.9, 0.1]] * 8,
        }
    )
    loss = SentenceTransformerLoss(
        model,
        [{"loss": "margin_mse"}, {"loss": "contrastive", "preset": "samtone_both", "weight": 0.5}],
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        logging_steps=1,
        disable_tqdm=True,
    )
    before = [p.detach().clone() for p in model.parameters()]
    try:
        SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss).train()
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    finally:
        with torch.no_grad():  # other tests in this module use the same model
            for p, b in zip(model.parameters(), before, strict=True):
                p.copy_(b)
        model.eval()


# ---------------------------------------------------------------- construction-time validation
def test_negative_query_columns_without_a_reader(model):
    with pytest.raises(
        ConfigError,
        match="num_negative_query_columns: 2 column.*no configured loss reads negative queries",
    ):
        SentenceTransformerLoss(
            model,
            [{"loss": "contrastive", "preset": "samtone_query"}],
            num_negative_query_columns=2,
        )


def test_dual_margin_mse_without_negative_query_column(model):
    with pytest.raises(
        ConfigError,
        match=r"loss\[0\] \(margin_mse\): dual_weight: .* needs hard-negative queries, but the batch has no negative-query column",
    ):
        SentenceTransformerLoss(model, [{"loss": "margin_mse", "dual_weight": 0.1}])


def test_margin_mse_without_hard_negative_columns(model):
    with pytest.raises(
        ConfigError, match=r"loss\[0\] \(margin_mse\): margin_mse: needs hard-negative documents"
    ):
        SentenceTransformerLoss(model, [{"loss": "margin_mse"}], num_hard_negative_columns=0)


def test_document_side_blocks_need_document_anchors(model):
    with pytest.raises(
        ConfigError,
        match=r"loss\[0\] \(contrastive\): directions: \['d2q', 'd2d'\] anchor a softmax on documents",
    ):
        SentenceTransformerLoss(
            model, [{"loss": "contrastive", "preset": "samtone_both"}], document_anchors=False
        )


def test_bad_column_counts(model):
    with pytest.raises(ConfigError, match="num_negative_query_columns: must be an integer >= 0"):
        SentenceTransformerLoss(model, [{"loss": "contrastive"}], num_negative_query_columns=-1)
    loss = SentenceTransformerLoss(
        model, ContrastiveLoss(preset="mnrl_dual"), num_negative_query_columns=2
    )
    with pytest.raises(
        ValueError,
        match=r"expected columns \(anchor, positive, 2 negative-query column\(s\)\) at least, got 3",
    ):
        loss.compute_loss_from_embeddings([torch.zeros(2, 4)] * 3, None)
    fixed = SentenceTransformerLoss(model, [{"loss": "contrastive"}], num_hard_negative_columns=1)
    with pytest.raises(ValueError, match="expected 1 hard-negative column"):
        fixed.compute_loss_from_embeddings([torch.zeros(2, 4)] * 4, None)


def test_bad_labels(model):
    loss = SentenceTransformerLoss(model, [{"loss": "margin_mse"}])
    cols = [torch.randn(2, 4) for _ in range(4)]
    with pytest.raises(
        ValueError,
        match=r"labels of shape \(2, 5\) do not fit 2 hard-negative and 0 negative-query column\(s\): expected \(2, 3\) teacher scores",
    ):
        loss.compute_loss_from_embeddings(cols, torch.zeros(2, 5))
    with pytest.raises(
        ValueError, match="the loss needs teacher scores, but the batch has no labels"
    ):
        loss.compute_loss_from_embeddings(cols, None)


def test_build_loss_accepts_objects_and_is_an_st_config(model):
    combined = build_loss(
        [{"loss": "contrastive", "preset": "gte_joint"}, {"loss": "margin_mse", "weight": 0.2}]
    )
    st = SentenceTransformerLoss(model, combined)
    cfg = st.get_config_dict()
    assert cfg["terms"][0]["groups"] == [{"blocks": ["q2d", "q2q", "d2q", "d2d"], "weight": 1.0}]
    assert cfg["terms"][1]["weight"] == 0.2
    assert "Towards General Text Embeddings" in st.citation

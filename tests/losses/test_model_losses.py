"""The losses a sentence-transformers user constructs as ``Loss(model, ...)``, in ST's trainer."""

from __future__ import annotations

import inspect
import textwrap

import pytest
import torch
from datasets import Dataset
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)

from tests.conftest import DOCS, QUERIES
from twotower.errors import ConfigError
from twotower.losses import (
    CombinedLoss,
    ContrastiveLoss,
    InfoNCELoss,
    ListwiseDistillationLoss,
    ListwiseKLLoss,
    MarginMSEDualLoss,
    MarginMSELoss,
    SentenceTransformerLoss,
    TwoTowerLoss,
)

DOCUMENT = {d["_id"]: d["text"] for d in DOCS}
QUERY = {q["_id"]: q["text"] for q in QUERIES}
ROWS = [("q1", "d1", "d2", "d5"), ("q2", "d3", "d4", "d6"), ("q3", "d6", "d5", "d1")]


def triples(*, label=None, negatives: int = 1) -> Dataset:
    """(anchor, positive, negative_1..) rows of the tiny collection, twice (4 rows a step)."""
    columns = {
        "anchor": [QUERY[q] for q, *_ in ROWS],
        "positive": [DOCUMENT[d] for _, d, *_ in ROWS],
    }
    for k in range(negatives):
        name = "negative" if negatives == 1 else f"negative_{k + 1}"
        columns[name] = [DOCUMENT[row[2 + k]] for row in ROWS]
    if label is not None:
        columns["label"] = [label] * len(ROWS)
    return Dataset.from_dict({name: values * 2 for name, values in columns.items()})


def train(model, loss, data, output_dir, steps: int = 2) -> SentenceTransformerTrainer:
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=3,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        logging_steps=1,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)
    trainer.train()
    return trainer


@pytest.fixture
def model(tiny_model):
    return SentenceTransformer(str(tiny_model), device="cpu")


def test_an_st_script_trains_saves_and_its_card_names_the_loss_and_paper(model, tmp_path):
    before = [p.detach().clone() for p in model.parameters()]
    loss = InfoNCELoss(model, preset="mnrl_dual", dual_weight=0.1, temperature=0.05)
    trainer = train(model, loss, triples(), tmp_path / "out")
    assert trainer.state.global_step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    model.save(str(tmp_path / "model"))

    card = (tmp_path / "model" / "README.md").read_text()
    assert "- loss:InfoNCELoss" in card and "#### InfoNCELoss" in card
    # InfoNCE (van den Oord et al.) and, for the d2q softmax, DANCE (Li et al. 2021).
    assert "Representation Learning with Contrastive Predictive Coding" in card
    assert "More Robust Dense Retrieval with Contrastive Dual Learning" in card
    # Neither the wrapper nor the embedding-level class (a name ST uses for another loss).
    for hidden in ("SentenceTransformerLoss", "CombinedLoss", "ContrastiveLoss"):
        assert hidden not in card, hidden
    reloaded = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    assert torch.allclose(
        torch.as_tensor(reloaded.encode(["cats"])), torch.as_tensor(model.encode(["cats"]))
    )


@pytest.mark.parametrize(
    "embedding_loss, right",
    [
        (ContrastiveLoss, "InfoNCELoss"),
        (MarginMSELoss, "MarginMSEDualLoss"),
        (ListwiseKLLoss, "ListwiseDistillationLoss"),
        (CombinedLoss, "TwoTowerLoss"),
    ],
)
def test_an_embedding_loss_given_a_model_is_one_line_naming_the_right_class(
    model, embedding_loss, right
):
    with pytest.raises(TypeError) as error:
        embedding_loss(model)
    message = str(error.value)
    assert "\n" not in message
    assert message == (
        f"{embedding_loss.__name__} scores an EmbeddingBatch and takes no model; to train a"
        f" SentenceTransformer use twotower.losses.{right}(model, ...)"
    )
    with pytest.raises(TypeError, match=f"use twotower.losses.{right}"):
        embedding_loss(model, similarity="dot")  # with options too


def test_the_right_class_refuses_a_missing_model_and_misspelt_options(model):
    with pytest.raises(
        TypeError, match=r"InfoNCELoss\(model, \.\.\.\): the first argument .* got str"
    ):
        InfoNCELoss("mnrl")
    with pytest.raises(TypeError, match=r"TwoTowerLoss\(model, \.\.\.\).* got list"):
        TwoTowerLoss([{"loss": "contrastive"}], None)
    with pytest.raises(
        ConfigError,
        match=r"InfoNCELoss: unknown option 'temprature' \(did you mean 'temperature'\?\)",
    ):
        InfoNCELoss(model, temprature=0.05)
    with pytest.raises(ConfigError, match="dual_negatives: 'in_batch' needs the teacher's score"):
        MarginMSEDualLoss(model, dual_weight=0.1, dual_negatives="in_batch")


def test_each_class_is_its_embedding_loss_with_the_same_values(model):
    """Same options, same value as SentenceTransformerLoss over the embedding loss; a loss of
    several terms returns them as a dict, which sums to that value."""
    model.eval()
    data = triples(negatives=2)
    features = [
        model.tokenize(data[c][:3]) for c in ("anchor", "positive", "negative_1", "negative_2")
    ]
    scores = torch.tensor([[0.9, 0.2, 0.1], [0.8, 0.5, 0.05], [0.7, 0.6, 0.3]])
    cases = [
        (InfoNCELoss(model, preset="samtone_both"), ContrastiveLoss(preset="samtone_both"), None),
        (MarginMSEDualLoss(model), MarginMSELoss(), scores),
        (ListwiseDistillationLoss(model), ListwiseKLLoss(), scores),
    ]
    for ours, embedding_loss, labels in cases:
        want = SentenceTransformerLoss(model, embedding_loss).forward(features, labels)
        with torch.no_grad():
            got = ours(features, labels)
        value = sum(got.values()) if isinstance(got, dict) else got
        assert value.item() == pytest.approx(want.item(), rel=1e-5), type(ours).__name__
        assert ours.citation == embedding_loss.citation != ""
        assert ours.get_config_dict() == embedding_loss.get_config_dict()
    terms = ListwiseDistillationLoss(model)(features, scores)
    assert set(terms) == {"listwise_kl", "listwise_kl_contrastive"}
    kl_only = ListwiseDistillationLoss(model, contrastive_weight=0)(features, scores)
    assert isinstance(kl_only, torch.Tensor)  # one term: a plain tensor, as any loss
    assert kl_only.item() == pytest.approx(terms["listwise_kl"].item(), rel=1e-5)


@pytest.mark.parametrize(
    "make, data, logged",
    [
        (
            lambda m: TwoTowerLoss(
                m,
                [
                    {"loss": "margin_mse"},
                    {"loss": "contrastive", "preset": "mnrl_dual", "weight": 0.5},
                ],
            ),
            triples(label=[0.9, 0.1]),
            ("margin_mse", "contrastive"),
        ),
        (
            ListwiseDistillationLoss,
            triples(label=[0.95, 0.2, 0.1], negatives=2),
            ("listwise_kl", "listwise_kl_contrastive"),
        ),
    ],
    ids=["margin_mse+mnrl_dual", "listwise"],
)
def test_a_combined_loss_logs_each_term_in_the_trainer(model, tmp_path, make, data, logged):
    trainer = train(model, make(model), data, tmp_path)
    steps = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in steps] == [1, 2]
    for entry in steps:
        assert all(entry[name] > 0 for name in logged), entry
        # The trainer sums the dict into the loss; the terms are logged rounded to 4 places.
        assert entry["loss"] == pytest.approx(sum(entry[name] for name in logged), abs=1e-3)


@pytest.mark.parametrize(
    "cls", [InfoNCELoss, MarginMSEDualLoss, ListwiseDistillationLoss, TwoTowerLoss]
)
def test_the_docstring_example_trains(cls, tiny_model, tmp_path, monkeypatch):
    doc = inspect.getdoc(cls)
    assert "Loss variants from the literature:" in doc
    example = textwrap.dedent(doc.split("Example:\n", 1)[1].split("::\n", 1)[1])
    assert "trainer.train()" in example
    monkeypatch.chdir(tmp_path)  # the trainer's default output folder
    code = example.replace("sentence-transformers/all-MiniLM-L6-v2", str(tiny_model))
    namespace: dict = {}
    exec(compile(code, f"<{cls.__name__} example>", "exec"), namespace)
    trainer = namespace["trainer"]
    assert trainer.state.global_step > 0
    assert type(trainer.loss) is cls

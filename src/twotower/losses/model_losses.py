"""The losses as a sentence-transformers user constructs them: ``Loss(model, ...)``.

Each class is :class:`~twotower.losses.st_loss.SentenceTransformerLoss` over one embedding loss,
under a name of its own (sentence-transformers' model card tags ``loss:<class name>`` and prints
``loss.citation``), none of them one of sentence-transformers' names for a different loss:

* :class:`InfoNCELoss` — :class:`~twotower.losses.contrastive.ContrastiveLoss`: MNRL, MNRL-Dual /
  DANCE, SamToNe, GTE's joint softmax.
* :class:`MarginMSEDualLoss` — :class:`~twotower.losses.margin_mse.MarginMSELoss`: Margin-MSE and
  Margin-MSE-Dual.
* :class:`ListwiseDistillationLoss` — :class:`~twotower.losses.listwise.ListwiseKLLoss`.
* :class:`TwoTowerLoss` — any weighted sum, declared as a recipe's ``loss:`` list.

Columns and labels are those of :class:`SentenceTransformerLoss`: (anchor, positive, hard
negative 1..K, negative query 1..M), labels the teacher's scores or margins. A loss of several
terms (Margin-MSE-Dual's two, Tamber et al.'s KL and contrastive term, a sum) returns them as a
dict, which sentence-transformers' trainer sums into the loss and logs term by term.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, ClassVar

# One merged forward for like-shaped columns (sentence-transformers 6).
from sentence_transformers.base.losses.merged_forward import embed_columns as _embed_columns
from torch import Tensor, nn

from twotower.errors import ConfigError, did_you_mean
from twotower.losses.base import EmbeddingLoss
from twotower.losses.contrastive import ContrastiveLoss
from twotower.losses.listwise import ListwiseKLLoss
from twotower.losses.margin_mse import MarginMSELoss
from twotower.losses.st_loss import Labels, SentenceTransformerLoss

# Options of SentenceTransformerLoss (the columns); every other option is the embedding loss's.
COLUMN_OPTIONS = (
    "num_negative_query_columns",
    "num_hard_negative_columns",
    "document_anchors",
    "gather_across_devices",
)


class TwoTowerLoss(SentenceTransformerLoss):
    """A weighted sum of twotower losses as a sentence-transformers loss, each term logged.

    The same loss as :class:`SentenceTransformerLoss` (same arguments, columns and labels), for
    a sentence-transformers user: when the objective has more than one term, ``forward`` returns
    them as a dict (``margin_mse``, ``contrastive``, ...), which ``SentenceTransformerTrainer``
    sums into the loss and logs beside it.

    Args:
        model: the SentenceTransformer being trained.
        loss: loss entries as in a recipe's ``loss:`` list (see :mod:`twotower.losses.spec`), or
            an :class:`~twotower.losses.base.EmbeddingLoss`.
        num_negative_query_columns, num_hard_negative_columns, document_anchors,
            gather_across_devices: as for :class:`SentenceTransformerLoss`.

    Loss variants from the literature:
        - Margin-MSE + MNRL-Dual (Hofstätter et al. 2020; Li et al. 2021): one encoding of the
          batch feeds both terms::

              loss = TwoTowerLoss(
                  model,
                  [{"loss": "margin_mse"}, {"loss": "contrastive", "preset": "mnrl_dual", "weight": 0.5}],
              )

    Example:
        ::

            from datasets import Dataset
            from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
            from twotower.losses import TwoTowerLoss

            model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
            train_dataset = Dataset.from_dict({
                "anchor": ["which small feline purrs", "safe systems programming language"],
                "positive": ["Cats are small felines that purr.", "Rust is a language focused on safety."],
                "negative": ["Dogs bark at strangers.", "Python is popular in machine learning."],
                "label": [[0.9, 0.1], [0.8, 0.3]],  # teacher scores T(q, d+), T(q, d-)
            })
            loss = TwoTowerLoss(
                model,
                [{"loss": "margin_mse"}, {"loss": "contrastive", "preset": "mnrl_dual", "weight": 0.5}],
            )
            trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
            trainer.train()  # logs loss, margin_mse and contrastive
    """

    def __init__(self, model: nn.Module, loss: Any, **columns: Any) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"{type(self).__name__}(model, ...): the first argument is the SentenceTransformer"
                f" being trained, got {type(model).__name__}"
            )
        super().__init__(model, loss, **columns)

    # A dict where SentenceTransformerLoss returns the total: sentence-transformers' trainer
    # sums and logs each term, which is what this class is for (hence the narrower override).
    def forward(  # type: ignore[override]
        self, sentence_features: Iterable[dict[str, Tensor]], labels: Labels
    ) -> Tensor | dict[str, Tensor]:
        embeddings = _embed_columns(self.model, list(sentence_features))
        terms = self.objective.compute_terms(self.batch_from_embeddings(embeddings, labels))
        # The trainer sums and logs a dict; one term is returned as a plain tensor.
        return terms if len(terms) > 1 else next(iter(terms.values()))


class _OneLoss(TwoTowerLoss):
    """A TwoTowerLoss over one embedding loss, built from the keyword options."""

    objective_class: ClassVar[type[EmbeddingLoss]]

    def __init__(self, model: nn.Module, **options: Any) -> None:
        columns = {k: options.pop(k) for k in COLUMN_OPTIONS if k in options}
        own = [
            name
            for name in list(inspect.signature(self.objective_class.__init__).parameters)[1:]
            if name != "layout"
        ]
        for key in options:
            if key not in own:
                valid = sorted(own + list(COLUMN_OPTIONS))
                raise ConfigError(
                    f"{type(self).__name__}: unknown option {key!r}{did_you_mean(key, valid)};"
                    f" valid: {valid}"
                )
        super().__init__(model, self.objective_class(**options), **columns)


class InfoNCELoss(_OneLoss):
    """InfoNCE over explicit softmax blocks: MNRL, MNRL-Dual (DANCE), SamToNe, GTE.

    For each anchor, the similarity to its paired text should beat every other candidate of its
    softmax. The blocks say which candidates: q2d (a query against the batch's documents and
    hard negatives), d2q (a document against the batch's queries and its mined negative
    queries), q2q and d2d (same-tower negatives). The options are those of
    :class:`~twotower.losses.contrastive.ContrastiveLoss`; give one of ``preset``,
    ``directions`` or ``groups`` (none: ``preset="mnrl"``).

    Args:
        model: the SentenceTransformer being trained.
        preset: ``mnrl``, ``mnrl_dual``, ``samtone_query``, ``samtone_both`` or ``gte_joint``.
        dual_weight: λ, the weight of the document-side softmax (DANCE used 0.1).
        temperature: τ (0.05 = sentence-transformers' scale 20); ``similarity``: cosine or dot.
        **options: the other options of ContrastiveLoss (``directions``, ``partition``,
            ``groups``, ``share_hard_negatives``, ``in_batch_negatives``, ...) and of
            SentenceTransformerLoss (``num_negative_query_columns``, ...).

    Inputs:
        +----------------------------------------------------------+--------+
        | Inputs                                                   | Labels |
        +==========================================================+========+
        | (anchor, positive) pairs                                 | none   |
        +----------------------------------------------------------+--------+
        | (anchor, positive, negative_1, ..., negative_K)          | none   |
        +----------------------------------------------------------+--------+
        | (..., negative_query_1, ..., negative_query_M), with     | none   |
        | ``num_negative_query_columns=M`` (DANCE, for d2q)        |        |
        +----------------------------------------------------------+--------+

    Relations:
        - sentence-transformers' ``MultipleNegativesRankingLoss`` is ``preset="mnrl"``; its
          ``partition_mode="per_direction"`` over (query_to_doc, doc_to_query) is half of
          ``preset="mnrl_dual"`` with ``dual_weight=1``.

    Loss variants from the literature:
        - InfoNCE / MNRL (van den Oord et al. 2018; Henderson et al. 2017)::

              loss = InfoNCELoss(model, preset="mnrl")

        - MNRL-Dual, DANCE's dual objective (Li et al. 2021), with M mined negative queries::

              loss = InfoNCELoss(model, preset="mnrl_dual", dual_weight=0.1, num_negative_query_columns=1)

        - ANCE's objective (Xiong et al. 2021): the positive against its own hard negative only::

              loss = InfoNCELoss(model, in_batch_negatives=False, share_hard_negatives=False)

        - SamToNe, same-tower negatives (Moiseev et al. 2023)::

              loss = InfoNCELoss(model, preset="samtone_both", dual_weight=1.0)

        - GTE's improved contrastive loss, one softmax over all four blocks (Li et al. 2023)::

              loss = InfoNCELoss(model, preset="gte_joint")

    Example:
        ::

            from datasets import Dataset
            from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
            from twotower.losses import InfoNCELoss

            model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
            train_dataset = Dataset.from_dict({
                "anchor": ["which small feline purrs", "safe systems programming language"],
                "positive": ["Cats are small felines that purr.", "Rust is a language focused on safety."],
                "negative": ["Dogs bark at strangers.", "Python is popular in machine learning."],
            })
            loss = InfoNCELoss(model, preset="mnrl_dual", dual_weight=0.1)
            trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
            trainer.train()
    """

    objective_class = ContrastiveLoss


class MarginMSEDualLoss(_OneLoss):
    """Margin-MSE distillation and its dual: a student's score margins fit a teacher's.

    ``(s(q, d+) - s(q, d-)) - (T(q, d+) - T(q, d-))``, squared, averaged over the hard negatives;
    with ``dual_weight=λ > 0`` plus λ times the same for a document and its mined negative
    queries, ``(s(d, q+) - s(d, q-)) - (T(q+, d) - T(q-, d))`` (DANCE's dual direction). The
    options are those of :class:`~twotower.losses.margin_mse.MarginMSELoss`.

    Args:
        model: the SentenceTransformer being trained.
        dual_weight: λ; 0 (default) is plain Margin-MSE. The dual term reads the last
            ``num_negative_query_columns`` columns as negative queries.
        similarity: ``dot`` (default, as the paper) or ``cosine``.
        **options: ``num_negative_query_columns``, ``num_hard_negative_columns``, ...

    Inputs:
        +-------------------------------------------------+--------------------------------------+
        | Inputs                                          | Labels                               |
        +=================================================+======================================+
        | (anchor, positive, negative_1, ..., negative_K) | (K,) margins T(q,d+) - T(q,d-_k), or |
        |                                                 | (1 + K,) scores [T(q,d+), T(q,d-)..] |
        +-------------------------------------------------+--------------------------------------+
        | (..., negative_query_1, ..., negative_query_M), | (1 + K + M,) scores, the last M      |
        | ``num_negative_query_columns=M``                | T(q-_m, d+)                          |
        +-------------------------------------------------+--------------------------------------+

    Relations:
        - sentence-transformers' ``MarginMSELoss`` is ``dual_weight=0`` (identical values).

    Loss variants from the literature:
        - Margin-MSE (Hofstätter et al. 2020)::

              loss = MarginMSEDualLoss(model)

        - Margin-MSE-Dual (the document-anchored direction of Li et al. 2021's DANCE, with the
          teacher's scores of each mined negative query)::

              loss = MarginMSEDualLoss(model, dual_weight=0.1, num_negative_query_columns=1)

    Example:
        ::

            from datasets import Dataset
            from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
            from twotower.losses import MarginMSEDualLoss

            model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
            train_dataset = Dataset.from_dict({
                "anchor": ["which small feline purrs", "safe systems programming language"],
                "positive": ["Cats are small felines that purr.", "Rust is a language focused on safety."],
                "negative": ["Dogs bark at strangers.", "Python is popular in machine learning."],
                "negative_query": ["loyal barking animal", "popular ml language"],
                "label": [[0.9, 0.1, 0.2], [0.8, 0.3, 0.1]],  # T(q, d+), T(q, d-), T(q-, d+)
            })
            loss = MarginMSEDualLoss(model, dual_weight=0.1, num_negative_query_columns=1)
            trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
            trainer.train()  # logs loss, margin_mse and margin_mse_dual
    """

    objective_class = MarginMSELoss

    def __init__(self, model: nn.Module, **options: Any) -> None:
        if options.get("dual_negatives") == "in_batch":
            raise ConfigError(
                "dual_negatives: 'in_batch' needs the teacher's score of every in-batch (query,"
                " document) pair, which a label row cannot carry; give mined negative queries"
                " (num_negative_query_columns) instead"
            )
        super().__init__(model, **options)


class ListwiseDistillationLoss(_OneLoss):
    """Listwise KL distillation of a teacher's candidate scores, plus a contrastive term.

    ``KL(softmax(T / T_t) || softmax(s / T_s))`` over each query's candidates (its positive and
    hard negatives), plus ``contrastive_weight`` times an InfoNCE term towards the teacher's
    top candidate, whose near-top candidates (teacher score above ``near_top_ratio`` × the top
    one) are not negatives. The options are those of
    :class:`~twotower.losses.listwise.ListwiseKLLoss`.

    Args:
        model: the SentenceTransformer being trained.
        student_temperature, teacher_temperature: T_s (0.05), T_t (0.3).
        contrastive_weight: w_con (0.1); 0 leaves the KL term only.
        near_top_ratio: 0.6, for teacher scores in [0, 1]; None masks the top candidate only.
        **options: ``contrastive_temperature``, ``similarity``, ``temperature_squared_scaling``,
            ``num_hard_negative_columns``, ...

    Inputs:
        +-------------------------------------------------+------------------------------------+
        | Inputs                                          | Labels                             |
        +=================================================+====================================+
        | (anchor, positive, negative_1, ..., negative_K) | (1 + K,) teacher scores            |
        |                                                 | [T(q, d+), T(q, d-_1..K)]          |
        +-------------------------------------------------+------------------------------------+

    Relations:
        - sentence-transformers' ``DistillKLDivLoss`` is ``contrastive_weight=0,
          temperature_squared_scaling=True`` (it scales the KL by T_s², as Hinton et al. 2015).

    Loss variants from the literature:
        - Cross-encoder listwise distillation with a contrastive term (Tamber et al. 2025)::

              loss = ListwiseDistillationLoss(model)

        - Listwise KL alone, Hinton et al. 2015's T² scaling, as sentence-transformers'
          ``DistillKLDivLoss``::

              loss = ListwiseDistillationLoss(model, contrastive_weight=0, temperature_squared_scaling=True)

    Example:
        ::

            from datasets import Dataset
            from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
            from twotower.losses import ListwiseDistillationLoss

            model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
            train_dataset = Dataset.from_dict({
                "anchor": ["which small feline purrs", "safe systems programming language"],
                "positive": ["Cats are small felines that purr.", "Rust is a language focused on safety."],
                "negative_1": ["Dogs bark at strangers.", "Python is popular in machine learning."],
                "negative_2": ["Green tea is brewed from leaves.", "Coffee beans are roasted."],
                "label": [[0.95, 0.2, 0.1], [0.9, 0.5, 0.05]],  # teacher scores in [0, 1]
            })
            loss = ListwiseDistillationLoss(model)
            trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
            trainer.train()  # logs loss, listwise_kl and listwise_kl_contrastive
    """

    objective_class = ListwiseKLLoss


__all__ = [
    "COLUMN_OPTIONS",
    "InfoNCELoss",
    "ListwiseDistillationLoss",
    "MarginMSEDualLoss",
    "TwoTowerLoss",
]

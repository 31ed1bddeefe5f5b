"""Fixtures of the training tests."""

import pytest

from tests.conftest import QRELS, write_collection


@pytest.fixture
def train_collection(tmp_path):
    root = write_collection(tmp_path / "c")
    (root / "qrels" / "train.tsv").write_text(QRELS)
    return root

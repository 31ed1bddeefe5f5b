from __future__ import annotations

from pathlib import Path

import pytest

from tests.teachers._tiny_cross_encoder import build_tiny_cross_encoder


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"))

"""The official test vectors, in ``tests/vectors/`` (see its README for their sources).

A missing file is an error, never a skip: the vector tests are the proof that the protocol
code is right.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def vector_path(relpath: str) -> Path:
    path = VECTORS / relpath
    if not path.is_file():
        raise FileNotFoundError(
            f"official test vector {path} is missing (tests/vectors/ is part of the repository)"
        )
    return path


def load_json(relpath: str) -> Any:
    return json.loads(vector_path(relpath).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    assert VECTORS.is_dir(), f"vectors directory {VECTORS} is missing"
    return VECTORS

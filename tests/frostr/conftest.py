"""Shared fixtures for the FROSTR tests: where the official vectors live."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest


def shared_dir() -> Path:
    env = os.environ.get("OA_SHARED_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared"


VECTORS = shared_dir() / "vectors"


def load_vector(relpath: str) -> Any:
    path = VECTORS / relpath
    if not path.exists():  # a missing vectors dir must fail, never skip
        raise FileNotFoundError(f"test vectors not found: {path} (set OA_SHARED_DIR)")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    assert VECTORS.is_dir(), f"test vectors not found at {VECTORS} (set OA_SHARED_DIR)"
    return VECTORS

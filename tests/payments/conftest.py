"""Shared fixtures for the payments tests: vectors dir, keys, a ledger-signed invoice maker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _vectors_dir() -> Path:
    env = os.environ.get("OA_SHARED_DIR")
    base = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared"
    return base / "vectors"


VECTORS = _vectors_dir()


@pytest.fixture(scope="session")
def vectors() -> Path:
    if not VECTORS.is_dir():  # a missing vectors dir is a failure, never a skip
        pytest.fail(f"test vectors not found at {VECTORS} (set OA_SHARED_DIR)")
    return VECTORS

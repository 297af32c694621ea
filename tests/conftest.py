"""Shared test setup: quiet TensorFlow, fixed seeds, paths to shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REALWORLD = SHARED / "realworld"


@pytest.fixture(scope="session")
def realworld_dir() -> Path:
    return REALWORLD

"""Shared test setup: quiet TensorFlow, fixed seeds, paths to shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow turns its oneDNN kernels on by default only on some CPUs; without them it cannot
# run channels_first convolutions and poolings on the CPU at all ("only supports NHWC"), so
# the references would depend on the machine. Keras's outputs are the reference either way.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REALWORLD = SHARED / "realworld"


@pytest.fixture(scope="session")
def realworld_dir() -> Path:
    return REALWORLD

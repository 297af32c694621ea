"""The TF-op layers Keras 2 writes for plain tensor math in functional models (TFOpLambda, SlicingOpLambda)."""

from __future__ import annotations

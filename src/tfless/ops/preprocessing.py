"""Preprocessing layers with stored state: Rescaling, Normalization, CenterCrop, Resizing."""

from __future__ import annotations

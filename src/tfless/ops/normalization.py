"""Normalization layers: batch, layer, group, unit and RMS normalization."""

from __future__ import annotations

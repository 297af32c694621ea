"""Attention layers: Attention, AdditiveAttention, MultiHeadAttention, GroupedQueryAttention."""

from __future__ import annotations

"""Recurrent layers: SimpleRNN, LSTM, GRU, ConvLSTM, the RNN wrapper and Bidirectional/TimeDistributed."""

from __future__ import annotations

"""The allocator tuning that lets activation buffers be reused between calls."""

from __future__ import annotations

import platform
import sys

import pytest

from tfless.runtime import memory


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt tuning applies to glibc only")
def test_glibc_keeps_freed_memory() -> None:
    assert memory.keep_freed_memory() is True
    assert memory.keep_freed_memory() is True  # idempotent


def test_without_glibc_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_applied", False)
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.keep_freed_memory() is False


def test_environment_turns_the_tuning_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_applied", False)
    monkeypatch.setenv("TFLESS_MALLOC_TUNING", "0")
    assert memory.keep_freed_memory() is False

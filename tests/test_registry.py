"""Registries refuse duplicates and name the known entries when asked for an unknown one."""

from __future__ import annotations

import pytest

from dflab.registry import Registry


def test_register_get_and_refuse_duplicates():
    reg: Registry[int] = Registry("thing")
    reg.add("b", 2)

    @reg.register("a")
    def a() -> int:
        return 1

    assert reg.get("a") is a and reg.get("b") == 2
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and len(reg) == 2 and "a" in reg
    with pytest.raises(KeyError, match="already registered"):
        reg.add("a", 3)
    with pytest.raises(KeyError, match="known: a, b"):
        reg.get("zzz")

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


def test_remove_takes_an_entry_back():
    reg: Registry[int] = Registry("thing")
    reg.add("a", 1)
    assert reg.remove("a") == 1 and "a" not in reg and len(reg) == 0
    reg.add("a", 2)  # the name is free again
    assert reg.get("a") == 2
    with pytest.raises(KeyError, match="unknown thing 'zzz'"):
        reg.remove("zzz")

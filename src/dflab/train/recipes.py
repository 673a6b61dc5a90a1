"""Recipe registry: every ``src/dflab/configs/recipes/<name>.yaml`` is a recipe named ``<name>``.

Recipes are data, not code, so the registry lists that one folder (and nothing else); a recipe given as a path to a
YAML file works too. A recipe file may name ``base: <recipe>``; its keys then override the base's, key by key
(see :mod:`dflab.train.config`). Method authors add a paper recipe ``<method>.yaml`` (exact hyper-parameters from
the paper, cited in ``paper:``) and a ``<method>_tiny.yaml`` that trains on 2 CPU cores in minutes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dflab.errors import ConfigError
from dflab.registry import Registry
from dflab.train.config import Recipe, deep_merge, parse_overrides, validate_recipe

RECIPE_DIR = Path(__file__).resolve().parents[1] / "configs" / "recipes"

#: recipe name -> YAML path
RECIPES: Registry[Path] = Registry("recipe")
for _p in sorted(RECIPE_DIR.glob("*.yaml")):
    RECIPES.add(_p.stem, _p)


def _recipe_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise ConfigError(f"recipe file {p} does not exist")
        return p
    try:
        return RECIPES.get(str(name_or_path))
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None


def load_raw(name_or_path: str | Path, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The recipe as a dict with its ``base`` chain merged (base first, then this file)."""
    path = _recipe_path(name_or_path)
    if str(path) in _seen:
        raise ConfigError(f"recipe base cycle: {' -> '.join((*_seen, str(path)))}")
    with open(path) as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {path} is not a mapping")
    own_name = raw.get("name") or path.stem
    base = raw.get("base")
    if base:
        raw = deep_merge(load_raw(base, (*_seen, str(path))), raw)
    raw["name"] = own_name
    return raw


def load_recipe(name_or_path: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> Recipe:
    """Load, merge and validate a recipe, then apply dotted overrides (``["train.epochs=2", ...]`` or a dict).

    Raises:
        ConfigError: unknown recipe, unknown key or invalid value.
    """
    raw = load_raw(name_or_path)
    if overrides:
        over = parse_overrides(overrides) if isinstance(overrides, list) else overrides
        raw = deep_merge(raw, over)
    return validate_recipe(raw)

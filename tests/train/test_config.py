"""Typed recipes: every shipped recipe validates, unknown keys are rejected, dotted overrides apply."""

from __future__ import annotations

import pytest

from dflab.errors import ConfigError
from dflab.train.config import parse_overrides
from dflab.train.data import mix_counts
from dflab.train.recipes import RECIPES, load_recipe


@pytest.mark.parametrize("name", RECIPES.names())
def test_every_recipe_validates(name):
    r = load_recipe(name)
    assert r.name == name
    assert "default" in r.data.streams or "default" in r.data.mixes
    for mix in r.data.mixes.values():  # every mixed batch gives each of its streams at least one item
        assert sum(mix_counts(mix, r.data.batch_size).values()) == r.data.batch_size
    if r.data.val is not None:
        assert "test" not in r.data.val.splits()


def test_base_and_overrides():
    r = load_recipe("resnet34_tiny", ["train.epochs=5", "--data.manifest", "/x/m.sqlite", "optim.betas=[0.5, 0.9]"])
    assert r.model.name == "resnet34_tiny"
    assert r.train.epochs == 5 and r.data.manifest == "/x/m.sqlite" and r.optim.betas == (0.5, 0.9)
    assert r.data.size == 64  # from the tiny file
    assert r.lr_schedule.name == "none"  # tiny overrides resnet18's cosine
    assert r.optim.lr == 0.001  # inherited from resnet18 via resnet34


def test_paper_hyperparameters_bigarts_setup():
    r = load_recipe("resnet18")
    assert (r.data.size, r.data.batch_size, r.optim.lr, r.optim.betas) == (256, 32, 0.001, (0.9, 0.999))
    assert r.lr_schedule.name == "cosine" and r.lr_schedule.t_max == 40


@pytest.mark.parametrize(
    "overrides",
    [["train.epochz=3"], ["data.streams.default.colour=1"], ["optim.name=rmsprop"], ["data.val.split=test"]],
)
def test_bad_overrides_rejected(overrides):
    with pytest.raises(ConfigError):
        load_recipe("resnet18_tiny", overrides)


def test_unknown_recipe():
    with pytest.raises(ConfigError, match="unknown recipe"):
        load_recipe("no_such_recipe")


def test_parse_overrides_forms():
    assert parse_overrides(["a.b=1", "--c.d", "x", "--e=[1, 2]", "f=null"]) == {
        "a": {"b": 1},
        "c": {"d": "x"},
        "e": [1, 2],
        "f": None,
    }
    with pytest.raises(ConfigError):
        parse_overrides(["novalue"])


def test_real_only_needs_synthesizer():
    with pytest.raises(ConfigError, match="synthesizer"):
        load_recipe("bi_tiny", ["data.streams.default.synthesizers=[]"])

"""``dflab train`` warns when the manifest does not hold the recipe's paper sampling, and the card carries it for
``dflab eval`` (issue 13, item 7; the checks themselves: tests/data/test_sampling.py)."""

from __future__ import annotations

import json

from dflab.train.recipes import load_recipe


def test_train_records_the_warning_and_the_card_carries_the_sampling(supervised_manifest, tmp_path):
    from dflab.train.loop import Trainer

    over = [f"data.manifest={supervised_manifest}", "data.size=32", "train.progress=false", "data.batch_size=4",
            "train.epochs=1", "train.steps_per_epoch=1", "data.sampling.train_frames=200",
            "data.streams.default.frames_per_video=200"]  # fmt: skip
    tr = Trainer(load_recipe("resnet18_tiny", over), tmp_path / "run")
    tr.close()
    assert len(tr.sampling_warnings) == 1 and "--frames 200" in tr.sampling_warnings[0]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["warnings"] == tr.sampling_warnings
    assert tr.card()["training"]["sampling"]["train_frames"] == 200

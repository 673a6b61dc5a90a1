"""``dflab list detectors|variants|recipes|datasets|synthesizers|protocols|schedules``."""

from __future__ import annotations

import argparse
import importlib

_WHAT = {
    "detectors": ("dflab.models.detectors", "dflab.models.base", "DETECTORS"),
    "variants": ("dflab.models.detectors", "dflab.models.base", "VARIANTS"),
    "recipes": ("dflab.train.recipes", "dflab.train.recipes", "RECIPES"),
    "datasets": ("dflab.data.datasets", "dflab.data.datasets", "DATASETS"),
    "synthesizers": ("dflab.synthesis", "dflab.synthesis.base", "SYNTHESIZERS"),
    "protocols": ("dflab.eval.protocols", "dflab.eval.protocols", "PROTOCOLS"),
    "schedules": ("dflab.train.schedules", "dflab.train.schedule", "SCHEDULES"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=sorted(_WHAT))


def run(args: argparse.Namespace) -> int:
    filler, home, attr = _WHAT[args.what]
    importlib.import_module(filler)
    registry = getattr(importlib.import_module(home), attr)
    for name in registry.names():
        print(name)
    return 0

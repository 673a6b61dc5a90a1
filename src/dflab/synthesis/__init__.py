"""dflab.synthesis — every fake- and mask-making procedure of the five papers, replayable from a seed.

Each registered synthesizer has ``sample_params(rng, face, pool=None, **kw) -> Params`` (all randomness) and a
pure ``apply(face, params, pool=None) -> SynthResult``. Importing this package fills ``SYNTHESIZERS``:

``addg`` (nine categories, ``category=``), ``bigarts_rr``, ``bigarts_fr``, ``iqd``, ``fwa``, ``bi``, ``partial``
(seven regions, ``category=``), ``sbi`` (self-blended images, Shiohara & Yamasaki 2022).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dflab.synthesis import addg as addg  # registers "addg"
from dflab.synthesis import bi as bi  # registers "bi"
from dflab.synthesis import big_arts_aug as big_arts_aug  # registers "bigarts_rr", "bigarts_fr"
from dflab.synthesis import fwa as fwa  # registers "fwa"
from dflab.synthesis import iqd as iqd  # registers "iqd"
from dflab.synthesis import partial as partial  # registers "partial"
from dflab.synthesis import sbi as sbi  # registers "sbi"
from dflab.synthesis.base import SYNTHESIZERS, DonorPoolLike, FaceSample, Params, SynthResult
from dflab.synthesis.donors import DonorPool

__all__ = ["SYNTHESIZERS", "DonorPool", "FaceSample", "Params", "SynthResult", "make_fake", "replay"]


def make_fake(
    name: str, rng: np.random.Generator, face: FaceSample, pool: DonorPoolLike | None = None, **kw: Any
) -> SynthResult:
    """Sample params with ``rng`` and apply them: the one call a data stream needs to turn a face into a fake.

    ``kw`` goes to ``sample_params`` (``category=`` for ``addg`` / ``partial``).
    """
    synth = SYNTHESIZERS.get(name)
    return synth.apply(face, synth.sample_params(rng, face, pool, **kw), pool)


def replay(params: Params | dict[str, Any], face: FaceSample, pool: DonorPoolLike | None = None) -> SynthResult:
    """Re-run a saved sample from its params (a ``Params`` or its ``to_dict()``) on the same face and pool."""
    p = params if isinstance(params, Params) else Params.from_dict(params)
    return SYNTHESIZERS.get(p.method).apply(face, p, pool)

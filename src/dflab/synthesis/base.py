"""Contract of every synthesizer: ``sample_params(rng, face, pool) -> Params`` + pure ``apply(face, params, pool)``.

All randomness goes through the explicit ``numpy.random.Generator`` given to ``sample_params``; ``apply`` is a pure
function of its inputs, so any sample can be replayed exactly from its saved params (``Params.to_dict``) and the
same donor pool. Donor faces (other identities) are referenced in params by their key in the :class:`DonorPool`,
never by an array.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

from dflab.registry import Registry


@dataclass
class FaceSample:
    """A face crop a synthesizer works on.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        landmarks: (68, 2) float32 iBUG points in image pixels.
        identity: identity key ("" if unknown); donors are drawn from other identities.
        key: the sample's own key in the donor pool (so it is never its own donor).
        original: (H, W, 3) uint8 aligned original when the sample is a dataset fake (for pixel masks), else None.
        label: 0 real, 1 fake (dataset label of ``image``).
    """

    image: np.ndarray
    landmarks: np.ndarray
    identity: str = ""
    key: str = ""
    original: np.ndarray | None = None
    label: int = 0


@dataclass
class Params:
    """Base of every synthesizer's parameter record. Subclasses are dataclasses of JSON-able fields."""

    method: ClassVar[str] = ""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.method:
            if cls.method in PARAMS_TYPES and PARAMS_TYPES[cls.method] is not cls:
                raise KeyError(f"params of method {cls.method!r} are already defined")
            PARAMS_TYPES[cls.method] = cls

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **asdict(self)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Params:
        """Rebuild saved params (``to_dict`` output, e.g. read back from JSON) as their own dataclass."""
        d = dict(d)
        method = d.pop("method", "")
        if method not in PARAMS_TYPES:
            raise KeyError(f"no params type for method {method!r}; known: {', '.join(sorted(PARAMS_TYPES))}")
        cls = PARAMS_TYPES[method]
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise KeyError(f"unknown {method} params field(s): {', '.join(sorted(unknown))}")
        return cls(**d)


P = TypeVar("P", bound=Params)

#: method name -> its Params dataclass (filled by ``Params.__init_subclass__``), for :meth:`Params.from_dict`
PARAMS_TYPES: dict[str, type[Params]] = {}


def expect_params(params: Params, cls: type[P]) -> P:
    """Return ``params`` typed as ``cls``; a clear TypeError when a synthesizer is given another method's params."""
    if not isinstance(params, cls):
        raise TypeError(f"expected {cls.__name__} ({cls.method!r}), got {type(params).__name__}")
    return params


@dataclass
class SynthResult:
    """Output of ``apply``.

    Attributes:
        image: (H, W, 3) uint8 RGB result.
        mask: (H, W) float32 in [0, 1], the manipulated region (0 where untouched; all zero for a real).
        label: 1 for a synthesised fake, 0 when the procedure leaves the face real.
        masks: extra named masks, each (H, W) float32 in [0, 1] (``mask_in``, ``mask_ex``, ``boundary`` …).
        params: the params that produced it.
    """

    image: np.ndarray
    mask: np.ndarray
    label: int
    params: Params
    masks: dict[str, np.ndarray] = field(default_factory=dict)


class DonorPoolLike(Protocol):
    """Donor faces for blending methods (see :class:`dflab.synthesis.donors.DonorPool`)."""

    def nearest(self, landmarks: np.ndarray, exclude_identity: str, k: int = 1) -> list[str]: ...

    def random_key(self, rng: np.random.Generator, exclude_identity: str) -> str: ...

    def load(self, key: str) -> FaceSample: ...


class Synthesizer(Protocol):
    name: str

    def sample_params(
        self, rng: np.random.Generator, face: FaceSample, pool: DonorPoolLike | None = None, **kw: Any
    ) -> Params: ...

    def apply(self, face: FaceSample, params: Params, pool: DonorPoolLike | None = None) -> SynthResult: ...


SYNTHESIZERS: Registry[Any] = Registry("synthesizer")

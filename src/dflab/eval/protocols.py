"""Evaluation protocols of the five papers as named data objects (STYLE.md §3, §9).

A :class:`Protocol` names its test sets as manifest column filters, the split on which a checkpoint may be
*selected* (always validation data, never test data), and what the checkpoint is expected to have been trained
on. ``dflab eval CKPT --protocol NAME --data MANIFEST...`` runs it; ``dflab list protocols`` lists them.

Registered (paper tables they reproduce):

* ``within`` — the test split of whatever manifest is given (BiG-Arts Table 2, MML Tables 1–2, LiSiam Tables I–II).
* ``cross_dataset_ffpp`` — train FF++ → Celeb-DF (v1 or v2: one manifest each), DFDC, DFDC-P, DFD, UADFV,
  DF-TIMIT LQ/HQ, WildDeepfake (BiG-Arts Table 4, LiSiam Table III, DADD Table 1 last column).
* ``cross_dataset_celebdf`` — train Celeb-DF → the others (BiG-Arts Tables 1, 3).
* ``cross_manipulation_ffpp`` — one test set per FF++ method, each = the real test videos + that method's fakes
  (DADD Table 1, MML Table 1, LAE Table 3 seen/unseen: methods in the checkpoint's training data are marked seen).
* ``cross_quality_ffpp`` — FF++ test split at c0 / c23 / c40 (LiSiam Tables IV–V).
* ``partial_face`` — BiG-Arts Table 7: a facial region (eyes, nose, mouth, lower, upper, left, right) of each test
  fake pasted into its original frame's crop; see :mod:`dflab.eval.partial`.
* ``folder`` — every face of a plain ``real/``/``fake/`` folder (``--root DIR``), no split.

Honesty by construction: :meth:`Protocol.check_selection` refuses a selection split that is a test split of the
protocol, and :func:`dflab.eval.select.select_checkpoint` additionally refuses when the selection rows share a
video with any test set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dflab.errors import DflabError
from dflab.registry import Registry

#: FF++ manipulation methods in the order of the papers' tables (DADD Table 1, MML Table 1)
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
#: BiG-Arts Table 7 regions (the names of ``dflab.synthesis.partial.REGIONS``)
PARTIAL_REGIONS = ("eyes", "nose", "mouth", "lower", "upper", "left", "right")


class SelectionError(DflabError):
    """A request to select a checkpoint (or tune anything) on test data."""


@dataclass(frozen=True)
class TestSet:
    """One named test set of a protocol.

    Attributes:
        name: column name in reports (``Celeb-DF v2``, ``NeuralTextures``, ``c40`` …).
        where: manifest column filters (``Manifest.faces(**where)``; a list means IN).
        paper: the table the number belongs to.
        synth: ``(kind, kwargs)`` when the fakes are built at evaluation time (partial-face), else ``None``.
        method: the manipulation this set measures (for seen/unseen marking), ``""`` when mixed.
    """

    name: str
    where: dict[str, Any]
    paper: str = ""
    synth: tuple[str, dict[str, Any]] | None = None
    method: str = ""


@dataclass(frozen=True)
class Protocol:
    """A named evaluation protocol.

    Attributes:
        name: CLI name.
        description: one line for ``dflab list`` and reports.
        tests: the test sets, in table order.
        select: filters of the data on which a checkpoint may be selected (validation data only).
        train: what the checkpoint is expected to have been trained on (compared with its card, reported).
        paper: the papers' tables this protocol reproduces.
        needs_root: the protocol prepares a plain folder given with ``--root`` (``folder``).
    """

    name: str
    description: str
    tests: tuple[TestSet, ...]
    select: dict[str, Any] = field(default_factory=lambda: {"split": "val"})
    train: dict[str, Any] = field(default_factory=dict)
    paper: str = ""
    needs_root: bool = False

    def test_splits(self) -> set[str]:
        """Every split value a test set of this protocol reads."""
        out: set[str] = set()
        for t in self.tests:
            v = t.where.get("split")
            if v is None:
                continue
            out.update([v] if isinstance(v, str) else v)
        return out

    def check_selection(self, split: str) -> None:
        """Raise :class:`SelectionError` unless ``split`` is a validation split distinct from every test split."""
        if split in self.test_splits() or split == "test":
            raise SelectionError(
                f"protocol {self.name!r} refuses to select a checkpoint on split {split!r}: it is test data "
                f"(test splits: {sorted(self.test_splits()) or ['test']}); select on the validation split"
            )
        if split != self.select.get("split", "val"):
            raise SelectionError(
                f"protocol {self.name!r} selects on split {self.select.get('split', 'val')!r}, not {split!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def register(protocol: Protocol) -> Protocol:
    PROTOCOLS.add(protocol.name, protocol)
    return protocol


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.get(name)


# ---------------------------------------------------------------------------------------------------- registered
register(
    Protocol(
        name="within",
        description="test split of the given manifest(s); select on val",
        tests=(TestSet("test", {"split": "test"}, paper="BiG-Arts Table 2; MML Tables 1-2; LiSiam Tables I-II"),),
        paper="BiG-Arts Table 2",
    )
)

# (report name, manifest filters). Dataset names are those of dflab.data.datasets.DATASETS. DF-TIMIT fakes carry
# compression LQ/HQ and its VidTIMIT reals none, so each quality is tested against all the reals (BiG-Arts Table 1).
# Celeb-DF v1 and v2 share the adapter and its columns: prepare each into its own manifest and run the protocol once
# per manifest (LiSiam Table III reports both).
_CROSS_TARGETS: dict[str, tuple[str, dict[str, Any]]] = {
    "ffpp": ("FF++", {"dataset": "ffpp", "split": "test", "method": ["real", "Deepfakes"], "compression": "c23"}),
    "celebdf": ("Celeb-DF", {"dataset": "celebdf", "split": "test"}),
    "dfdc": ("DFDC", {"dataset": "dfdc", "split": "test"}),
    "dfdc_preview": ("DFDC-P", {"dataset": "dfdc_preview"}),
    "dfd": ("DFD", {"dataset": "dfd"}),
    "uadfv": ("UADFV", {"dataset": "uadfv"}),
    "dftimit_lq": ("DT-LQ", {"dataset": "dftimit", "compression": ["", "LQ"]}),
    "dftimit_hq": ("DT-HQ", {"dataset": "dftimit", "compression": ["", "HQ"]}),
    "wilddeepfake": ("WildDeepfake", {"dataset": "wilddeepfake", "split": "test"}),
}


def _cross(keys: list[str], paper: str) -> tuple[TestSet, ...]:
    return tuple(TestSet(_CROSS_TARGETS[k][0], dict(_CROSS_TARGETS[k][1]), paper=paper) for k in keys)


register(
    Protocol(
        name="cross_dataset_ffpp",
        description="train FF++ (c23) -> Celeb-DF, DFDC, DFDC-P, DFD, UADFV, DF-TIMIT LQ/HQ, WildDeepfake",
        # BiG-Arts §4.1: the testing set for datasets with a split, entire videos for the others
        tests=_cross(
            [
                "ffpp",
                "celebdf",
                "dfdc",
                "dfdc_preview",
                "dfd",
                "uadfv",
                "dftimit_lq",
                "dftimit_hq",
                "wilddeepfake",
            ],
            "BiG-Arts Table 4; LiSiam Table III; DADD Table 1",
        ),
        select={"split": "val", "dataset": "ffpp"},
        train={"dataset": "ffpp"},
        paper="BiG-Arts Table 4, LiSiam Table III",
    )
)
register(
    Protocol(
        name="cross_dataset_celebdf",
        description="train Celeb-DF -> UADFV, DF-TIMIT LQ/HQ, FF++, DFD, DFDC-P, Celeb-DF, WildDeepfake",
        tests=_cross(
            ["uadfv", "dftimit_lq", "dftimit_hq", "ffpp", "dfd", "dfdc_preview", "celebdf", "wilddeepfake"],
            "BiG-Arts Tables 1, 3",
        ),
        # BiG-Arts §4.1: Celeb-DF has no validation set; its training set is split 8:2 into train/val
        select={"split": "val", "dataset": "celebdf"},
        train={"dataset": "celebdf"},
        paper="BiG-Arts Tables 1, 3",
    )
)
register(
    Protocol(
        name="cross_manipulation_ffpp",
        description="FF++ test split, one test set per manipulation (real + that method); seen/unseen from the card",
        tests=tuple(
            TestSet(m, {"dataset": "ffpp", "split": "test", "method": ["real", m]}, paper="DADD Table 1", method=m)
            for m in FFPP_METHODS
        ),
        select={"split": "val", "dataset": "ffpp"},
        train={"dataset": "ffpp"},
        paper="DADD Table 1, MML Table 1, LAE Table 3",
    )
)
register(
    Protocol(
        name="cross_quality_ffpp",
        description="FF++ test split at c0 / c23 / c40 (train at one quality, test at all three)",
        tests=tuple(
            TestSet(c, {"dataset": "ffpp", "split": "test", "compression": c}, paper="LiSiam Tables IV-V")
            for c in ("c0", "c23", "c40")
        ),
        select={"split": "val", "dataset": "ffpp"},
        train={"dataset": "ffpp"},
        paper="LiSiam Tables IV-V",
    )
)
register(
    Protocol(
        name="partial_face",
        description="test fakes with one facial region pasted into the original crop (eye, nose, mouth, ...)",
        tests=tuple(
            TestSet(r, {"split": "test"}, paper="BiG-Arts Table 7", synth=("partial", {"region": r}))
            for r in PARTIAL_REGIONS
        ),
        paper="BiG-Arts Table 7",
    )
)
register(
    Protocol(
        name="folder",
        description="every face of a plain real/ fake/ folder given with --root (no split, no selection)",
        tests=(TestSet("folder", {"dataset": "folder"}),),
        select={"split": "val", "dataset": "folder"},
        needs_root=True,
    )
)

"""Dataset adapters: each reads one dataset in its official downloaded layout and split files.

An adapter's ``scan(root, **options)`` returns :class:`~dflab.data.manifest.VideoRecord` s with label, method,
compression, split and — for fakes, when the dataset names it — the original (target) video and the identity source.
A file the dataset's metadata lists but that is absent is still returned (its ``path`` does not exist): ``prepare``
records it with status ``error``, cause ``missing``, and goes on. Paths are parsed *here* only, once; everything
downstream reads the manifest's columns.

Layouts (as the datasets are distributed):

* ``ffpp`` — FaceForensics++ (Rössler et al. 2019): ``original_sequences/youtube/{raw|c23|c40}/videos/XXX.mp4``,
  ``manipulated_sequences/{Deepfakes,Face2Face,FaceSwap,NeuralTextures,FaceShifter}/{comp}/videos/XXX_YYY.mp4``
  (target XXX, source YYY), masks in ``manipulated_sequences/M/masks/videos/XXX_YYY.mp4``, splits in
  ``splits/{train,val,test}.json`` (lists of ``[a, b]`` pairs: originals a and b, fakes ``a_b`` and ``b_a``).
  ``raw`` is recorded as compression ``c0``.
* ``dfd`` — Google/Jigsaw DeepFakeDetection as FF++ ships it: ``original_sequences/actors/{comp}/videos/AA__scene.mp4``
  and ``manipulated_sequences/DeepFakeDetection/{comp}/videos/AA_BB__scene__HASH.mp4`` (target actor AA).
* ``celebdf`` — Celeb-DF v1/v2: ``Celeb-real/``, ``YouTube-real/``, ``Celeb-synthesis/`` (``idA_idB_NNNN.mp4`` is
  ``idA_NNNN`` with idB's face); ``List_of_testing_videos.txt`` (``<1 real|0 fake> <relative path>``) = test split.
* ``dfdc`` — DFDC training parts ``dfdc_train_part_N/metadata.json`` (``{"x.mp4": {"label": "FAKE", "split":
  "train", "original": "y.mp4"}}``); a root/any-folder ``labels.csv`` (``filename,label``) marks test videos.
* ``dfdc_preview`` — DFDC preview: ``dataset.json`` (``{"method_A/…/x.mp4": {"label": "fake", "set": "train",
  "target_id": …}}``) with ``original_videos/``, ``method_A/``, ``method_B/``.
* ``uadfv`` — ``real/NNNN.mp4`` and ``fake/NNNN_fake.mp4``.
* ``dftimit`` — DeepfakeTIMIT ``{lower_quality|higher_quality}/<subject>/<sentence>-video-<other>.avi`` (compression
  ``LQ``/``HQ``), reals from VidTIMIT when present: ``VidTIMIT/<subject>/video/<sentence>/`` frame folders.
* ``wilddeepfake`` — extracted ``{real,fake}_{train,test}/…/<sequence>/<n>.png``: each folder of frames is a video.
* ``folder`` — anyone's own data: ``real/`` and ``fake/`` (optionally under ``train/``/``val/``/``test/``, optionally
  with one method folder level under ``fake/``), images or videos.
* ``media`` — an analyst's list of files and folders (no labels: label ``-1``), the scanner's path.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Protocol

from dflab.data.manifest import FAKE, REAL, VideoRecord
from dflab.errors import ConfigError
from dflab.media.files import media_files
from dflab.media.video import IMAGE_EXTS, VIDEO_EXTS
from dflab.registry import Registry

UNKNOWN = -1  # label of media with no ground truth (``media`` adapter)


class DatasetAdapter(Protocol):
    name: str

    def scan(self, root: Path, **options: Any) -> list[VideoRecord]: ...


DATASETS: Registry[DatasetAdapter] = Registry("dataset")


def _adapter(cls: type) -> type:
    """Register one instance of an adapter class under its ``name``."""
    DATASETS.add(cls.name, cls())
    return cls


def _media_files(folder: Path, exts: set[str] | None = None) -> list[Path]:
    # broken links and unreadable folders are listed too: prepare records them (``missing``, ``unreadable``)
    return media_files(folder, exts or (VIDEO_EXTS | IMAGE_EXTS))


def _require(root: Path, *parts: str) -> None:
    if not root.is_dir():
        raise ConfigError(f"dataset root {root} is not a folder")
    if parts and not any((root / p).exists() for p in parts):
        raise ConfigError(f"{root} does not look like this dataset: none of {', '.join(parts)} found")


# --------------------------------------------------------------------------------------------------- FaceForensics++
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
_COMP_DIRS = {"raw": "c0", "c0": "c0", "c23": "c23", "c40": "c40"}


def _pick_compression(candidates: Iterable[Path], wanted: str | None) -> str:
    present = sorted({p.name for p in candidates if p.name in _COMP_DIRS and (p / "videos").is_dir()})
    if wanted is not None:
        names = [d for d in present if _COMP_DIRS[d] == _COMP_DIRS.get(wanted, wanted)]
        if not names:
            raise ConfigError(f"compression {wanted!r} not found; present: {', '.join(present) or 'none'}")
        return names[0]
    for pref in ("c23", "raw", "c0", "c40"):  # c23 is the papers' default setting
        if pref in present:
            return pref
    raise ConfigError("no compression folder (raw/c0/c23/c40) with videos/ found")


def _ffpp_splits(root: Path) -> dict[str, str]:
    """video name (``XXX`` or ``XXX_YYY``) → split, from the official ``splits/*.json``."""
    out: dict[str, str] = {}
    for split in ("train", "val", "test"):
        f = root / "splits" / f"{split}.json"
        if not f.exists():
            continue
        for a, b in json.loads(f.read_text()):
            for name in (a, b, f"{a}_{b}", f"{b}_{a}"):
                out[name] = split
    return out


@_adapter
class FaceForensicsPP:
    """FaceForensics++ originals and its five manipulation methods (one compression per scan)."""

    name = "ffpp"

    def scan(
        self, root: Path, *, compression: str | None = None, methods: Iterable[str] = FFPP_METHODS, **_: Any
    ) -> list[VideoRecord]:
        root = Path(root)
        _require(root, "original_sequences", "manipulated_sequences")
        splits = _ffpp_splits(root)
        comp_dirs = [*(root / "original_sequences" / "youtube").glob("*")]
        for m in methods:
            comp_dirs += [*(root / "manipulated_sequences" / m).glob("*")]
        comp_dir = _pick_compression(comp_dirs, compression)
        comp = _COMP_DIRS[comp_dir]
        records = []
        orig_dir = root / "original_sequences" / "youtube" / comp_dir / "videos"
        for p in sorted(orig_dir.glob("*.mp4")) if orig_dir.is_dir() else []:
            records.append(
                VideoRecord("ffpp", p.stem, str(p), REAL, "real", splits.get(p.stem, ""), comp, identity=p.stem)
            )
        for m in methods:
            vdir = root / "manipulated_sequences" / m / comp_dir / "videos"
            if not vdir.is_dir():
                continue
            for p in sorted(vdir.glob("*.mp4")):
                target, _, source = p.stem.partition("_")
                mask = root / "manipulated_sequences" / m / "masks" / "videos" / p.name
                records.append(
                    VideoRecord(
                        "ffpp",
                        f"{m}/{p.stem}",
                        str(p),
                        FAKE,
                        m,
                        splits.get(p.stem, ""),
                        comp,
                        original_id=target,  # the target video XXX, frame-aligned with XXX_YYY
                        source_id=source,
                        identity=target,
                        mask_path=str(mask) if mask.exists() else "",
                    )
                )
        return records


@_adapter
class DeepFakeDetection:
    """Google/Jigsaw DeepFakeDetection (DFD) in FF++'s layout (actors + DeepFakeDetection)."""

    name = "dfd"
    _fake = re.compile(r"^(?P<target>\d+)_(?P<source>\d+)__(?P<scene>.+?)__(?P<tag>[^_]+)$")

    def scan(self, root: Path, *, compression: str | None = None, **_: Any) -> list[VideoRecord]:
        root = Path(root)
        _require(root, "original_sequences", "manipulated_sequences")
        comp_dirs = [*(root / "original_sequences" / "actors").glob("*")]
        comp_dirs += [*(root / "manipulated_sequences" / "DeepFakeDetection").glob("*")]
        comp_dir = _pick_compression(comp_dirs, compression)
        comp = _COMP_DIRS[comp_dir]
        records = []
        odir = root / "original_sequences" / "actors" / comp_dir / "videos"
        originals = sorted(odir.glob("*.mp4")) if odir.is_dir() else []
        for p in originals:
            actor = p.stem.split("__", 1)[0]
            records.append(VideoRecord("dfd", p.stem, str(p), REAL, "real", "", comp, identity=actor))
        fdir = root / "manipulated_sequences" / "DeepFakeDetection" / comp_dir / "videos"
        for p in sorted(fdir.glob("*.mp4")) if fdir.is_dir() else []:
            m = self._fake.match(p.stem)
            target = source = orig = ""
            if m:
                target, source = m["target"], m["source"]
                orig = f"{target}__{m['scene']}"
            records.append(
                VideoRecord(
                    "dfd",
                    f"DeepFakeDetection/{p.stem}",
                    str(p),
                    FAKE,
                    "DeepFakeDetection",
                    "",
                    comp,
                    original_id=orig,
                    source_id=source,
                    identity=target,
                )
            )
        return records


# --------------------------------------------------------------------------------------------------------- Celeb-DF
@_adapter
class CelebDF:
    """Celeb-DF v1 and v2 (the test list decides the split; everything else is train)."""

    name = "celebdf"
    _synth = re.compile(r"^(?P<target>id\d+)_(?P<source>id\d+)_(?P<clip>\d+)$")

    def scan(self, root: Path, **_: Any) -> list[VideoRecord]:
        root = Path(root)
        _require(root, "Celeb-real", "Celeb-synthesis", "YouTube-real", "List_of_testing_videos.txt")
        listed: dict[str, int] = {}
        test_list = root / "List_of_testing_videos.txt"
        if test_list.exists():
            for line in test_list.read_text().splitlines():
                if line.strip():
                    flag, rel = line.split(maxsplit=1)
                    listed[rel.strip()] = int(flag)
        rels = set(listed)
        for folder in ("Celeb-real", "YouTube-real", "Celeb-synthesis"):
            if (root / folder).is_dir():
                rels |= {str(p.relative_to(root)) for p in (root / folder).glob("*.mp4")}
        records = []
        for rel in sorted(rels):
            folder, name = rel.split("/", 1)
            stem = Path(name).stem
            vid = f"{folder}/{stem}"
            split = "test" if rel in listed else "train"
            if folder == "Celeb-synthesis":
                m = self._synth.match(stem)
                orig = f"Celeb-real/{m['target']}_{m['clip']}" if m else ""
                records.append(
                    VideoRecord(
                        "celebdf",
                        vid,
                        str(root / rel),
                        FAKE,
                        "celebdf",
                        split,
                        "",
                        original_id=orig,
                        source_id=m["source"] if m else "",
                        identity=m["target"] if m else "",
                    )
                )
            else:
                identity = stem.split("_")[0] if folder == "Celeb-real" else f"youtube_{stem}"
                records.append(VideoRecord("celebdf", vid, str(root / rel), REAL, "real", split, "", identity=identity))
            if rel in listed and (listed[rel] == 1) != (records[-1].label == REAL):
                records[-1].extra["list_label_disagrees"] = True
        return records


# ------------------------------------------------------------------------------------------------------------- DFDC
@_adapter
class DFDC:
    """DFDC full release: per-part ``metadata.json``; the original of a fake may be in another part."""

    name = "dfdc"

    def scan(self, root: Path, **_: Any) -> list[VideoRecord]:
        root = Path(root)
        metas = sorted(root.rglob("metadata.json"))
        labels_csv = sorted(root.rglob("labels.csv"))
        if not root.is_dir() or not (metas or labels_csv):
            raise ConfigError(f"{root}: no DFDC metadata.json or labels.csv found")
        entries: dict[str, dict[str, Any]] = {}
        for meta in metas:
            for fname, info in json.loads(meta.read_text()).items():
                entries[Path(fname).stem] = {**info, "_path": meta.parent / fname, "_part": meta.parent.name}
        for lc in labels_csv:
            with open(lc, newline="") as fh:
                for row in csv.DictReader(fh):
                    stem = Path(row["filename"]).stem
                    label = "FAKE" if str(row["label"]).strip() in ("1", "1.0", "FAKE") else "REAL"
                    entries[stem] = {
                        "label": label,
                        "split": "test",
                        "_path": lc.parent / row["filename"],
                        "_part": lc.parent.name,
                    }
        records = []
        for stem in sorted(entries):
            info = entries[stem]
            fake = str(info["label"]).upper() == "FAKE"
            orig = Path(info["original"]).stem if fake and info.get("original") else ""
            records.append(
                VideoRecord(
                    "dfdc",
                    stem,
                    str(info["_path"]),
                    FAKE if fake else REAL,
                    "dfdc" if fake else "real",
                    info.get("split", "train"),
                    "",
                    original_id=orig,
                    identity=orig if fake else stem,  # DFDC names no identity: a fake shares its original's
                    extra={"part": info["_part"]},
                )
            )
        return records


@_adapter
class DFDCPreview:
    """DFDC preview release (``dataset.json``; methods A and B)."""

    name = "dfdc_preview"

    def scan(self, root: Path, **_: Any) -> list[VideoRecord]:
        root = Path(root)
        index = root / "dataset.json"
        if not index.exists():
            raise ConfigError(f"{root}: dataset.json not found (DFDC preview layout)")
        records = []
        for rel, info in sorted(json.loads(index.read_text()).items()):
            fake = str(info.get("label", "")).lower() == "fake"
            top = rel.split("/", 1)[0]
            method = top if fake else "real"
            target = str(info.get("target_id", "") or "")
            records.append(
                VideoRecord(
                    "dfdc_preview",
                    str(Path(rel).with_suffix("")),
                    str(root / rel),
                    FAKE if fake else REAL,
                    method,
                    {"train": "train", "test": "test"}.get(str(info.get("set", "")), str(info.get("set", ""))),
                    "",
                    identity=target,
                    extra={k: v for k, v in info.items() if isinstance(v, str | int | float)},
                )
            )
        return records


# ---------------------------------------------------------------------------------------------------------- UADFV
@_adapter
class UADFV:
    name = "uadfv"

    def scan(self, root: Path, **_: Any) -> list[VideoRecord]:
        root = Path(root)
        _require(root, "real", "fake")
        records = []
        for p in _media_files(root / "real", VIDEO_EXTS) if (root / "real").is_dir() else []:
            records.append(VideoRecord("uadfv", f"real/{p.stem}", str(p), REAL, "real", identity=p.stem))
        for p in _media_files(root / "fake", VIDEO_EXTS) if (root / "fake").is_dir() else []:
            orig = p.stem.removesuffix("_fake")
            records.append(
                VideoRecord("uadfv", f"fake/{p.stem}", str(p), FAKE, "uadfv", original_id=f"real/{orig}", identity=orig)
            )
        return records


# --------------------------------------------------------------------------------------------------------- DF-TIMIT
@_adapter
class DFTIMIT:
    """DeepfakeTIMIT LQ/HQ fakes; VidTIMIT reals (frame folders) when present under ``VidTIMIT/``."""

    name = "dftimit"
    _quality: ClassVar[dict[str, str]] = {"lower_quality": "LQ", "higher_quality": "HQ"}

    def scan(self, root: Path, *, compression: str | None = None, **_: Any) -> list[VideoRecord]:
        root = Path(root)
        base = root / "DeepfakeTIMIT" if (root / "DeepfakeTIMIT").is_dir() else root
        _require(base, *self._quality)
        records = []
        for qdir, q in self._quality.items():
            if (compression and compression.upper() != q) or not (base / qdir).is_dir():
                continue
            for p in sorted((base / qdir).glob("*/*.avi")):
                subject = p.parent.name
                sentence, _, other = p.stem.partition("-video-")
                records.append(
                    VideoRecord(
                        "dftimit",
                        f"{q}/{subject}/{p.stem}",
                        str(p),
                        FAKE,
                        "dftimit",
                        "",
                        q,
                        original_id=f"{subject}/{sentence}",
                        source_id=other,
                        identity=subject,
                    )
                )
        vid = root / "VidTIMIT"
        if vid.is_dir():
            for d in sorted(vid.glob("*/video/*")):
                if d.is_dir() and d.name not in ("head", "head2", "head3"):  # head-rotation sequences are not speech
                    subject = d.parent.parent.name
                    records.append(
                        VideoRecord("dftimit", f"{subject}/{d.name}", str(d), REAL, "real", identity=subject)
                    )
        return records


# ------------------------------------------------------------------------------------------------------ WildDeepfake
@_adapter
class WildDeepfake:
    """WildDeepfake after extraction: every folder of frame images under ``{real,fake}_{train,test}`` is a video."""

    name = "wilddeepfake"

    def scan(self, root: Path, **_: Any) -> list[VideoRecord]:
        root = Path(root)
        tops = ("real_train", "real_test", "fake_train", "fake_test")
        _require(root, *tops)
        records = []
        for top in tops:
            if not (root / top).is_dir():
                continue
            label = REAL if top.startswith("real") else FAKE
            folders = sorted({p.parent for p in (root / top).rglob("*") if p.suffix.lower() in IMAGE_EXTS})
            for d in folders:
                rel = d.relative_to(root)
                records.append(
                    VideoRecord(
                        "wilddeepfake",
                        str(rel),
                        str(d),
                        label,
                        "real" if label == REAL else "wilddeepfake",
                        top.split("_")[1],
                        "",
                        kind="frames",
                        identity=rel.parts[1] if len(rel.parts) > 1 else "",  # the source-video folder
                    )
                )
        return records


# ----------------------------------------------------------------------------------------------------------- folder
@_adapter
class Folder:
    """``real/`` + ``fake/`` (optionally under split folders, optionally ``fake/<method>/``), images or videos."""

    name = "folder"

    def scan(self, root: Path, **_: Any) -> list[VideoRecord]:
        root = Path(root)
        roots: list[tuple[Path, str]] = [(root / s, s) for s in ("train", "val", "test") if (root / s).is_dir()]
        if (root / "real").is_dir() or (root / "fake").is_dir():
            roots.append((root, ""))
        if not roots:
            raise ConfigError(f"{root}: expected real/ and fake/ folders (optionally under train/ val/ test/)")
        records = []
        for base, split in roots:
            for cls, label in (("real", REAL), ("fake", FAKE)):
                if not (base / cls).is_dir():
                    continue
                for p in _media_files(base / cls):
                    rel = p.relative_to(base / cls)
                    method = "real" if label == REAL else (rel.parts[0] if len(rel.parts) > 1 else "fake")
                    vid = str(p.relative_to(root).with_suffix(""))
                    kind = "image" if p.suffix.lower() in IMAGE_EXTS else "video"
                    records.append(VideoRecord("folder", vid, str(p), label, method, split, "", kind=kind))
        return records


# ------------------------------------------------------------------------------------------------------------ media
@_adapter
class Media:
    """An analyst's files and folders, unlabelled (label -1). ``root`` may be one path or a list (``paths=``).

    Video ids are paths relative to the deepest folder that holds every given item, so ``case1/driving.mp4`` and
    ``case2/driving.mp4`` stay two videos (an analyst's folders reuse names: ``1.jpg``, ``driving.mp4``).
    """

    name = "media"

    def scan(self, root: Path | None = None, *, paths: Iterable[str | Path] = (), **_: Any) -> list[VideoRecord]:
        items = [Path(os.path.abspath(p)) for p in paths] or ([Path(os.path.abspath(root))] if root is not None else [])
        try:
            base = Path(os.path.commonpath([str(i.parent) for i in items])) if items else Path()
        except ValueError:  # different drives (Windows): ids stay absolute
            base = None
        records, seen = [], set()
        for item in items:
            files = _media_files(item) if item.is_dir() else [item]
            for p in files:
                key = os.path.realpath(p)  # never raises (``Path.resolve`` does on a symlink loop in 3.11)
                if key in seen:
                    continue
                seen.add(key)
                vid = p.relative_to(base).as_posix() if base is not None else p.as_posix()
                kind = "image" if p.suffix.lower() in IMAGE_EXTS else "video"
                records.append(VideoRecord("media", vid, str(p), UNKNOWN, "unknown", kind=kind))
        return records


def scan_dataset(name: str, root: str | Path | None, **options: Any) -> list[VideoRecord]:
    """Scan a registered dataset; video ids are checked unique."""
    records = DATASETS.get(name).scan(Path(root).resolve() if root is not None else None, **options)
    ids = [r.video_id for r in records]
    if len(ids) != len(set(ids)):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ConfigError(f"dataset {name}: duplicate video ids {dup}")
    return records

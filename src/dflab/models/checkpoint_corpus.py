"""A corpus of broken, disguised and hostile checkpoints, for fuzzing every command that loads one.

Each entry derives from one good checkpoint folder (``model.safetensors`` + ``card.json``) and is written as its
own folder (or file) under ``out``. :data:`BAD` maps the entry to a phrase its
:class:`~dflab.errors.CheckpointError` must contain; :data:`GOOD` lists variants that must still load (cards with
newer calibration and verdict fields, extra informational keys). Nothing here ever unpickles: the pickle entries
are built with :mod:`pickle` writing plain data, and the loader must refuse them unread.
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct
from pathlib import Path
from typing import Any

#: entry -> a phrase of the CheckpointError it must raise (checked case-insensitively)
BAD: dict[str, str] = {
    "pickle.pt": "refused on purpose",
    "pickle_renamed": "refused on purpose",
    "torch_zip_renamed": "refused on purpose",
    "zero_bytes": "not a safetensors file",
    "truncated": "safetensors file",
    "giant_header": "not a safetensors file",
    "lying_header": "safetensors",
    "garbage_header": "safetensors",
    "nan_weights": "nan/inf",
    "inf_weights": "nan/inf",
    "missing_weights": "no weights",
    "missing_card": "no checkpoint card",
    "card_not_json": "invalid json",
    "card_is_list": "format",
    "card_wrong_format": "format",
    "temperature_zero": "temperature must be > 0",
    "temperature_negative": "temperature must be > 0",
    "temperature_nan": "calibration.temperature",
    "calibration_unknown": "no 'temperature'",
    "platt_negative_scale": "scale must be > 0",
    "platt_missing_bias": "needs finite 'scale' and 'bias'",
    "platt_by_kind_negative": "calibration.by_kind.video.scale",
    "platt_by_kind_unknown_kind": "calibration.by_kind.audio",
    "file_calibration_negative": "calibration.file.by_kind.video.scale",
    "file_calibration_prior_one": "calibration.file.prior",
    "crop_size_zero": "input_spec.crop_size",
    "verdict_inverted": "real_below",
    "verdict_out_of_range": "verdict.fake_at",
    "verdict_jpeg_quality_zero": "verdict.min_jpeg_quality",
    "verdict_video_qp_over_51": "verdict.max_video_qp",
    "std_zero": "std must be > 0",
    "std_nan": "input_spec.std",
    "mean_inf": "input_spec.mean",
    "size_zero": "input_spec.size",
    "size_huge": "input_spec.size",
    "kwargs_size_huge": "kwargs.size",
    "align_unknown": "input_spec.align",
    "margin_negative": "input_spec.margin",
    "detector_empty": "detector",
    "detector_unknown": "not registered",
    "kwargs_unknown": "kwargs do not fit",
    "pair_from_two_saves": "different saves",
    "pair_other_detector": "beside a card for",
}

#: variants that must load: today's and issue 11's calibration fields, a verdict band, informational extras
GOOD: tuple[str, ...] = (
    "good",
    "good_platt",
    "good_platt_by_kind",
    "good_file_calibration",
    "good_crop_size",
    "good_verdict",
    "good_extra_keys",
    "good_legacy_no_id",
)


def _card(src: Path) -> dict[str, Any]:
    return json.loads((src / "card.json").read_text())


def _write(dst: Path, src: Path, *, card: Any = None, weights: bytes | None = None, raw_card: str | None = None):
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "model.safetensors").write_bytes(
        weights if weights is not None else (src / "model.safetensors").read_bytes()
    )
    text = raw_card if raw_card is not None else json.dumps(_card(src) if card is None else card)
    (dst / "card.json").write_text(text)


def _edit(src: Path, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    card = _card(src)
    node = card
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return card


def _poisoned(src: Path, value: float) -> bytes:
    """The good weights with one value of the first float tensor replaced (header untouched)."""
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(src / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    first = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[first] = tensors[first].clone()
    tensors[first].view(-1)[0] = value
    return save(tensors, metadata=meta)


#: card entries: (path of the edited field, its new value)
CARD_EDITS: dict[str, tuple[tuple[str, ...], Any]] = {
    "good_platt": (("calibration",), {"method": "platt", "scale": 1.7, "bias": -0.2, "fitted_on": "val"}),
    "good_platt_by_kind": (
        ("calibration",),
        {"method": "platt", "scale": 1.7, "bias": -0.2, "by_kind": {"image": {"scale": 2.0, "bias": -1.0}}},
    ),
    "good_file_calibration": (
        ("calibration",),
        {
            "method": "platt",
            "scale": 1.7,
            "bias": -0.2,
            "file": {"scale": 2.0, "bias": 0.5, "prior": 0.5, "by_kind": {"video": {"scale": 6.0, "bias": 2.0}}},
        },
    ),
    "good_crop_size": (("input_spec", "crop_size"), 256),
    "good_verdict": (("verdict",), {"real_below": 0.3, "fake_at": 0.7, "min_jpeg_quality": 75, "max_video_qp": 36.5}),
    "good_extra_keys": (("metrics", "new_metric"), {"auc": 0.5, "note": "informational sections are free-form"}),
    "card_wrong_format": (("format",), "other/9"),
    "temperature_zero": (("calibration",), {"method": "temperature", "temperature": 0}),
    "temperature_negative": (("calibration",), {"method": "temperature", "temperature": -1.0}),
    "temperature_nan": (("calibration",), {"method": "temperature", "temperature": float("nan")}),
    "calibration_unknown": (("calibration",), {"method": "isotonic"}),
    "platt_negative_scale": (("calibration",), {"method": "platt", "scale": -2.0, "bias": 0.0}),
    "platt_missing_bias": (("calibration",), {"method": "platt", "scale": 2.0}),
    "platt_by_kind_negative": (
        ("calibration",),
        {"method": "platt", "scale": 1.0, "bias": 0.0, "by_kind": {"video": {"scale": -1.0, "bias": 0.0}}},
    ),
    "platt_by_kind_unknown_kind": (
        ("calibration",),
        {"method": "platt", "scale": 1.0, "bias": 0.0, "by_kind": {"audio": {"scale": 1.0, "bias": 0.0}}},
    ),
    "file_calibration_negative": (
        ("calibration",),
        {
            "method": "platt",
            "scale": 1.0,
            "bias": 0.0,
            "file": {"scale": 1.0, "bias": 0.0, "by_kind": {"video": {"scale": -3.0, "bias": 0.0}}},
        },
    ),
    "file_calibration_prior_one": (
        ("calibration",),
        {"method": "platt", "scale": 1.0, "bias": 0.0, "file": {"scale": 1.0, "bias": 0.0, "prior": 1.0}},
    ),
    "crop_size_zero": (("input_spec", "crop_size"), 0),
    "verdict_inverted": (("verdict",), {"real_below": 0.8, "fake_at": 0.2}),
    "verdict_out_of_range": (("verdict",), {"real_below": 0.2, "fake_at": 1.5}),
    "verdict_jpeg_quality_zero": (("verdict",), {"real_below": 0.2, "fake_at": 0.7, "min_jpeg_quality": 0}),
    "verdict_video_qp_over_51": (("verdict",), {"real_below": 0.2, "fake_at": 0.7, "max_video_qp": 60}),
    "std_zero": (("input_spec", "std"), [0, 0, 0]),
    "std_nan": (("input_spec", "std"), [float("nan"), 1, 1]),
    "mean_inf": (("input_spec", "mean"), [float("inf"), 0, 0]),
    "size_zero": (("input_spec", "size"), 0),
    "size_huge": (("input_spec", "size"), 30000),
    "kwargs_size_huge": (("kwargs", "size"), 30000),
    "align_unknown": (("input_spec", "align"), "../../etc"),
    "margin_negative": (("input_spec", "margin"), -1.3),
    "detector_empty": (("detector",), ""),
    "detector_unknown": (("detector",), "no_such_detector"),
    "kwargs_unknown": (("kwargs", "no_such_argument"), 1),
    "pair_from_two_saves": (("checkpoint_id",), "0" * 32),
    "pair_other_detector": (("detector",), "resnet18"),
}


def _lying(w: bytes) -> bytes:
    """Valid JSON header whose first tensor claims bytes far beyond the end of the file."""
    n = struct.unpack("<Q", w[:8])[0]
    header = json.loads(w[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    start = header[name]["data_offsets"][0]
    header[name]["data_offsets"] = [start, start + 2**40]
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + w[8 + n :]


def write_checkpoint_corpus(good: str | Path, out: str | Path) -> dict[str, Path]:
    """Write every :data:`BAD` and :data:`GOOD` entry under ``out`` from the good checkpoint folder ``good``.

    Returns:
        entry name -> the path to pass as a checkpoint.
    """
    src, out = Path(good), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    w = (src / "model.safetensors").read_bytes()
    n = struct.unpack("<Q", w[:8])[0]
    plain = pickle.dumps({"weights": [0.0] * 8}, protocol=4)  # a pickle of plain data: nothing runs if read
    weights: dict[str, bytes] = {
        "pickle_renamed": plain,
        "torch_zip_renamed": b"PK\x03\x04" + b"\x00" * 60,
        "zero_bytes": b"",
        "truncated": w[: len(w) // 2],
        "giant_header": struct.pack("<Q", 2**40) + b"{" + b" " * 64,
        "lying_header": _lying(w),
        "garbage_header": struct.pack("<Q", 16) + b"{not json at all" + w[8 + n :],
        "nan_weights": _poisoned(src, float("nan")),
        "inf_weights": _poisoned(src, float("inf")),
    }
    raw_cards = {"card_not_json": "{'format': 'dflab-detector/1',", "card_is_list": "[1, 2, 3]"}
    paths: dict[str, Path] = {}
    for name in (*GOOD, *BAD):
        dst = out / name
        if name == "pickle.pt":
            dst.write_bytes(plain)
        else:
            shutil.rmtree(dst, ignore_errors=True)
            card = _edit(src, *CARD_EDITS[name]) if name in CARD_EDITS else None
            if name == "good_legacy_no_id":  # cards written before checkpoint ids existed
                card = {k: v for k, v in _card(src).items() if k != "checkpoint_id"}
            _write(dst, src, card=card, weights=weights.get(name), raw_card=raw_cards.get(name))
            if name == "missing_weights":
                (dst / "model.safetensors").unlink()
            if name == "missing_card":
                (dst / "card.json").unlink()
        paths[name] = dst
    return paths

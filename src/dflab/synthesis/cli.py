"""``dflab synth``: write synthesised samples, their masks and params — or one contact sheet.

Examples::

    dflab synth --method addg --category SB-Sim --input face.jpg --pool ../shared/data/real_faces/deepface \\
        --out out/ --seed 0 --n 4
    dflab synth --method bigarts_fr --input prepared/manifest.sqlite --out out/ --seed 1
    dflab synth --sheet --input 519.mp4 --pair 519_515.mp4 519.mp4 --pool faces/ --out docs/synthesis_sheet.png
    dflab synth --sheet --input photo.jpg --out sheet.png   # no --pool: donors = the photo's mirror / other faces
    dflab synth --replay out/0003_addg_params.json --input face.jpg --pool ../shared/data/real_faces/deepface --out re/

Each sample ``i`` gives ``{i:04d}_{method}.png`` (image), ``…_mask.png``, one PNG per extra mask and
``…_params.json`` (``Params.to_dict()`` plus the seed and input), from which :func:`dflab.synthesis.replay`
rebuilds the sample exactly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from dflab.errors import DflabError, MediaError
from dflab.synthesis import SYNTHESIZERS, DonorPool
from dflab.synthesis._faces import face_sample, read_frame, self_donors
from dflab.synthesis.base import FaceSample, SynthResult

_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_NEEDS_FAKE = ("bigarts_fr", "partial")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    import dflab.synthesis  # noqa: F401  (fills SYNTHESIZERS)

    parser.add_argument("--method", choices=SYNTHESIZERS.names(), help="synthesizer (registered name)")
    parser.add_argument("--category", default=None, help="ADDG category (SB-Sim …) or partial region (eyes …)")
    parser.add_argument("--input", required=True, help="image, video (see --frame) or dflab manifest")
    parser.add_argument("--pair", nargs=2, metavar=("FAKE", "ORIGINAL"), help="a dataset fake and its original")
    parser.add_argument("--pool", default=None, help="donor faces: a manifest or a folder of photos")
    parser.add_argument("--out", required=True, help="output folder (or the PNG path with --sheet)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=1, help="number of samples")
    parser.add_argument("--frame", type=int, default=0, help="frame index for video inputs")
    parser.add_argument("--size", type=int, default=256, help="crop size for image/video inputs")
    parser.add_argument("--sheet", action="store_true", help="write one contact sheet PNG of every method")
    parser.add_argument("--replay", default=None, help="a written *_params.json: rebuild that sample exactly")


def _is_manifest(path: Path) -> bool:
    return path.suffix == ".sqlite" or (path.is_dir() and (path / "manifest.sqlite").exists())


def pool_from_folder(folder: Path, size: int = 256) -> tuple[DonorPool, list[dict[str, str]]]:
    """Donor pool over the photos of a folder (identity = sub-folder name, else file stem); faceless photos are
    reported in the returned records, not dropped silently."""
    samples, skipped = [], []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in _IMAGE_EXT:
            continue
        ident = p.parent.name if p.parent != folder else p.stem
        try:
            samples.append(face_sample(read_frame(p), size=size, identity=ident, key=str(p.relative_to(folder))))
        except (DflabError, OSError, ValueError) as exc:
            skipped.append({"path": str(p), "cause": type(exc).__name__, "detail": str(exc)})
    if not samples:
        raise ValueError(f"no usable faces in {folder}")
    return DonorPool.from_samples(samples), skipped


def _load_pool(arg: str | None, inp: Path, size: int) -> tuple[DonorPool | None, list[dict[str, str]]]:
    if arg is None:
        return (DonorPool.from_manifest(inp), []) if _is_manifest(inp) else (None, [])
    p = Path(arg)
    if _is_manifest(p):
        return DonorPool.from_manifest(p), []
    return pool_from_folder(p, size)


def _manifest_faces(path: Path, fake: bool, n: int, rng: np.random.Generator) -> list[FaceSample]:
    from dflab.data.manifest import Manifest

    with Manifest(path, readonly=True) as m:
        rows = m.faces(label=1 if fake else 0)
        root = m.root
    if fake:
        rows = [r for r in rows if r.original_crop]
    if not rows:
        raise ValueError(f"no {'fake faces with an original crop' if fake else 'real faces'} in {path}")
    pick = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
    from dflab.synthesis.donors import face_key, read_rgb

    out = []
    for i in pick:
        r = rows[int(i)]
        orig = read_rgb(root / r.original_crop) if r.original_crop else None
        out.append(
            FaceSample(
                read_rgb(root / r.crop_path),
                r.landmarks_array(),
                identity=r.identity or r.original_id or r.video_id,
                key=face_key(r.dataset, r.video_id, r.frame_index, r.track_id),
                original=orig,
                label=r.label,
            )
        )
    return out


def _save(path: Path, arr: np.ndarray) -> None:
    img = arr if arr.dtype == np.uint8 else (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")


def _write(stem: Path, res: SynthResult, record: dict) -> None:
    _save(stem.with_name(stem.name + ".png"), res.image)
    _save(stem.with_name(stem.name + "_mask.png"), res.mask)
    for name, m in res.masks.items():
        _save(stem.with_name(f"{stem.name}_{name}.png"), m)
    stem.with_name(stem.name + "_params.json").write_text(json.dumps(record, indent=2))


def _replay(args: argparse.Namespace, inp: Path, pool: DonorPool | None, pair: FaceSample | None) -> int:
    from dflab.synthesis import replay
    from dflab.synthesis.base import Params

    record = json.loads(Path(args.replay).read_text())
    params = Params.from_dict(record["params"])
    if params.method in _NEEDS_FAKE:
        if pair is None:
            print(f"[synth] replaying {params.method} needs --pair FAKE ORIGINAL")
            return 2
        face = pair
    elif _is_manifest(inp):
        face = DonorPool.from_manifest(inp, label=[0, 1]).load(record["face_key"])
    else:
        face = face_sample(read_frame(inp, args.frame), size=args.size, identity=inp.stem, key=f"input:{inp}")
    res = replay(params, face, pool)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(out_dir / f"replay_{params.method}", res, {**record, "label": res.label})
    print(f"[synth] replayed {params.method} into {out_dir}")
    return 0


def run(args: argparse.Namespace) -> int:
    import dflab.synthesis  # noqa: F401

    inp = Path(args.input)
    rng = np.random.default_rng(args.seed)
    try:
        pool, skipped = _load_pool(args.pool, inp, args.size)
        for s in skipped:
            print(f"[synth] pool: skipped {s['path']}: {s['cause']} {s['detail']}")
        pair = None
        if args.pair:
            fake_path, orig_path = args.pair
            pair = face_sample(
                read_frame(fake_path, args.frame),
                original=read_frame(orig_path, args.frame),
                size=args.size,
                identity=Path(orig_path).stem,
                key=f"pair:{Path(fake_path).name}",
            )
        if args.sheet:
            from dflab.synthesis.sheet import write_sheet

            rgb = read_frame(inp, args.frame)
            face = face_sample(rgb, size=args.size, identity=inp.stem, key=f"input:{inp}")
            if pool is None:  # one photo: donors from the photo itself (its mirror image, its other faces)
                donors = self_donors(rgb, size=args.size, identity=inp.stem)
                pool = DonorPool.from_samples([face, *donors]) if donors else None
                used = ", ".join(d.identity for d in donors) or "none found: donor methods show 'needs --pool'"
                print(f"[synth] no --pool: donors made from the input ({used})")
            out = Path(args.out)
            out = out if out.suffix == ".png" else out / "synthesis_sheet.png"
            write_sheet(out, face, pool, pair, seed=args.seed)
            print(f"[synth] wrote {out}")
            return 0
        if args.replay:
            return _replay(args, inp, pool, pair)
        if not args.method:
            print("[synth] give --method NAME, --sheet or --replay")
            return 2
        fake_needed = args.method in _NEEDS_FAKE
        if _is_manifest(inp):
            faces = _manifest_faces(inp, fake_needed, args.n, rng)
        elif fake_needed:
            if pair is None:
                print(f"[synth] {args.method} needs a dataset fake and its original: give --pair FAKE ORIGINAL")
                return 2
            faces = [pair]
        else:
            faces = [face_sample(read_frame(inp, args.frame), size=args.size, identity=inp.stem, key=f"input:{inp}")]
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        synth = SYNTHESIZERS.get(args.method)
        kw = {"category": args.category} if args.category else {}
        for i in range(args.n):
            face = faces[i % len(faces)]
            params = synth.sample_params(rng, face, pool, **kw)
            res = synth.apply(face, params, pool)
            record = {"params": params.to_dict(), "seed": args.seed, "index": i, "face_key": face.key}
            _write(out_dir / f"{i:04d}_{args.method}", res, {**record, "label": res.label})
        print(f"[synth] wrote {args.n} sample(s) of {args.method} to {out_dir}")
        return 0
    except (DflabError, MediaError, KeyError, ValueError, OSError) as exc:
        print(f"[synth] error: {exc}")
        return 1

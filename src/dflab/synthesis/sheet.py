"""Contact sheet: every synthesizer / category applied to one face, image above mask (like DADD Fig. 2, BiG-Arts
Fig. 5), so a person can see what dflab synthesises.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dflab.synthesis import masks as mk
from dflab.synthesis.addg import CATEGORIES
from dflab.synthesis.base import SYNTHESIZERS, DonorPoolLike, FaceSample
from dflab.synthesis.big_arts_aug import bigarts_targets
from dflab.synthesis.partial import REGIONS


def needs_donor(method: str, kw: dict) -> bool:
    """Whether a sheet job blends in a face of another identity (and so needs a donor pool)."""
    sb = method == "addg" and str(kw.get("category")).startswith("SB-")
    return sb or method in ("bigarts_rr", "bigarts_fr", "bi")


def placeholder(h: int, w: int, text: str) -> np.ndarray:
    """A grey cell with ``text`` in it. Shape: -> (h, w, 3) uint8."""
    img = np.full((h, w, 3), 200, np.uint8)
    scale = max(0.4, w / 320)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    org = (max(0, (w - tw) // 2), (h + th) // 2)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (60, 60, 60), 2, cv2.LINE_AA)
    return img


def sheet_entries(
    face: FaceSample, pool: DonorPoolLike | None, pair: FaceSample | None = None, seed: int = 0
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(title, image, mask) for every method and category; the fake-pair methods only when ``pair`` is given.

    Without a donor ``pool`` the methods that blend in another identity (ADDG SB-*, BiG-Arts, BI) are grey cells
    reading "needs --pool".

    Each entry is sampled with its own generator ``default_rng([seed, i])`` so entries do not depend on each other.
    """
    h, w = face.image.shape[:2]
    out: list[tuple[str, np.ndarray, np.ndarray]] = [("real input", face.image, np.zeros((h, w), np.float32))]
    jobs: list[tuple[str, str, FaceSample, dict]] = [(c, "addg", face, {"category": c}) for c in CATEGORIES]
    jobs += [("BiG (Real,Real) M_ex", "bigarts_rr", face, {}), ("BI (X-ray)", "bi", face, {})]
    jobs += [("FWA", "fwa", face, {}), ("LiSiam IQD", "iqd", face, {})]
    if pair is not None:
        jobs += [("BiG (Fake,Real) M_in", "bigarts_fr", pair, {})]
        jobs += [(f"partial {r}", "partial", pair, {"category": r}) for r in REGIONS]
    for i, (title, name, f, kw) in enumerate(jobs):
        if pool is None and needs_donor(name, kw):
            out.append((title, placeholder(h, w, "needs --pool"), np.zeros((h, w), np.float32)))
            continue
        synth = SYNTHESIZERS.get(name)
        rng = np.random.default_rng([seed, i])
        res = synth.apply(f, synth.sample_params(rng, f, pool, **kw), pool)
        mask = res.masks["mask_ex"] if name == "bigarts_rr" else res.mask
        if name == "bi":
            mask = res.masks["boundary"]
        out.append((title, res.image, mask))
    if pair is not None:
        assert pair.original is not None
        tg = bigarts_targets(pair)
        out.append(("dataset fake: M_in", pair.image, tg["mask_in"]))
        out.append(("LiSiam SSIM mask", pair.image, mk.ssim_mask(pair.image, pair.original)))
        out.append(("DIFF mask", pair.image, mk.diff_mask(pair.image, pair.original)))
    return out


def compose(entries: list[tuple[str, np.ndarray, np.ndarray]], tile: int = 160, columns: int = 7) -> np.ndarray:
    """Lay entries out as cells (title band, image, mask) in a grid.

    Shape:
        returns (rows·(2·tile + 20), columns·tile, 3) uint8 RGB.
    """
    band = 20
    cell_h = band + 2 * tile
    rows = (len(entries) + columns - 1) // columns
    sheet = np.full((rows * cell_h, columns * tile, 3), 255, np.uint8)
    for i, (title, image, mask) in enumerate(entries):
        r, c = divmod(i, columns)
        y, x = r * cell_h, c * tile
        cv2.putText(sheet, title[:22], (x + 3, y + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        sheet[y + band : y + band + tile, x : x + tile] = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA)
        m = cv2.resize((np.clip(mask, 0, 1) * 255).astype(np.uint8), (tile, tile), interpolation=cv2.INTER_AREA)
        sheet[y + band + tile : y + cell_h, x : x + tile] = m[..., None]
        cv2.rectangle(sheet, (x, y + band), (x + tile - 1, y + cell_h - 1), (255, 255, 255), 1)
    return sheet


def write_sheet(
    path: str | Path,
    face: FaceSample,
    pool: DonorPoolLike | None,
    pair: FaceSample | None = None,
    seed: int = 0,
    tile: int = 160,
) -> Path:
    """Write the contact sheet PNG and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = compose(sheet_entries(face, pool, pair, seed), tile=tile)
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"cannot write {path}")
    return path

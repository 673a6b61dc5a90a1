"""Donor faces for the blending methods: "the frame of another identity whose landmarks are closest".

Used by ADDG SB-Sim / SB-Rand (DADD Sec. 3.1), BiG-Arts (Real, Real) / (Fake, Real) (Sec. 3.3: "calculate the
Euclidean distance with the facial landmarks of A; the image with least Euclidean distance serves as target") and
Face X-ray BI (nearest-landmark donor). The pool holds keys, identities and landmarks; the search is a k-d tree
(``scipy.spatial.cKDTree``) over the top principal components of the normalised landmark vectors with an exact
re-ranking in the full space (see :meth:`DonorPool.nearest`); candidates are filtered for identity with a numpy
mask — no Python loop over the pool.

Normalisation: each face's 68 points minus their centroid, divided by their RMS distance to it (translation and
scale removed). Crops in a manifest are made by one alignment procedure, so what remains is pose and expression
— the "similar face" the papers look for. Euclidean distance on these 136-vectors is the papers' distance up to the
normalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from dflab.synthesis.base import FaceSample


def normalise_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Remove translation and scale from landmark sets.

    Shape:
        (N, 68, 2) or (68, 2) -> (N, 136) or (136,) float32.
    """
    pts = np.asarray(landmarks, dtype=np.float32)
    single = pts.ndim == 2
    if single:
        pts = pts[None]
    centred = pts - pts.mean(axis=1, keepdims=True)
    scale = np.sqrt((centred**2).sum(axis=2).mean(axis=1))[:, None, None]
    out = (centred / np.maximum(scale, 1e-6)).reshape(len(pts), -1)
    return out[0] if single else out


class DonorPool:
    """Faces indexed by key, identity and normalised landmarks.

    Args:
        keys: unique key per face.
        identities: identity per face (donors always come from a different identity).
        landmarks: (N, 68, 2) landmarks in crop pixels.
        loader: ``key -> FaceSample`` (image I/O happens here, only for the donors actually used).
        pca_dims: dimensions of the k-d tree's space (the search stays exact whatever the value).
    """

    def __init__(
        self,
        keys: Sequence[str],
        identities: Sequence[str],
        landmarks: np.ndarray,
        loader: Callable[[str], FaceSample],
        pca_dims: int = 16,
    ) -> None:
        self.keys = np.asarray(list(keys), dtype=object)
        self.identities = np.asarray(list(identities), dtype=object)
        lms = np.asarray(landmarks, dtype=np.float32)
        if lms.ndim != 3 or lms.shape[1:] != (68, 2):
            raise ValueError(f"landmarks must be (N, 68, 2), got {lms.shape}")
        if not (len(self.keys) == len(self.identities) == len(lms)):
            raise ValueError("keys, identities and landmarks must have the same length")
        if len(self.keys) == 0:
            raise ValueError("donor pool is empty")
        self._index = {k: i for i, k in enumerate(self.keys.tolist())}
        if len(self._index) != len(self.keys):
            raise ValueError("donor pool keys must be unique")
        self._loader = loader
        self.vectors = normalise_landmarks(lms)
        # principal components of the landmark vectors: the tree works in this low-dimensional space (real landmark
        # sets vary mostly by pose and expression), exact distances are checked in the full space (see nearest)
        self._mean = self.vectors.mean(0)
        centred = self.vectors - self._mean
        _, vecs = np.linalg.eigh(centred.T @ centred)
        self._components = vecs[:, ::-1][:, : min(pca_dims, len(self.vectors), vecs.shape[1])].T.astype(np.float32)
        self.tree = cKDTree(centred @ self._components.T)
        # identity codes for a vectorised "other identity" filter
        self._id_lookup: dict[str, int] = {}
        self._id_codes = np.fromiter(
            (self._id_lookup.setdefault(str(i), len(self._id_lookup)) for i in self.identities.tolist()),
            dtype=np.int64,
            count=len(self.identities),
        )

    def __len__(self) -> int:
        return len(self.keys)

    def _code(self, identity: str) -> int:
        return self._id_lookup.get(identity, -1)

    def nearest(self, landmarks: np.ndarray, exclude_identity: str, k: int = 1) -> list[str]:
        """Keys of the ``k`` faces of other identities whose normalised landmarks are closest (nearest first).

        Exact search: the k-d tree holds the vectors projected on their top principal components; since a projection
        never lengthens a distance, candidates found there are re-ranked by the full distance ``r`` and, unless the
        tree's next candidate already lies beyond ``r``, completed with a ball query of radius ``r``.

        Shape:
            landmarks (68, 2).
        """
        q = normalise_landmarks(landmarks)
        qp = (q - self._mean) @ self._components.T
        code = self._code(exclude_identity)
        n = len(self.keys)
        m = min(n, max(8 * k, 32))
        while True:
            dp, idx = self.tree.query(qp, k=m)
            dp, idx = np.atleast_1d(dp), np.atleast_1d(idx)
            cand = idx[(idx < n)]
            cand = cand[self._id_codes[cand] != code]
            if len(cand) >= k or m >= n:
                break
            m = min(n, m * 8)
        if len(cand) == 0:
            raise LookupError(f"no donor of an identity other than {exclude_identity!r} in the pool")
        full = np.linalg.norm(self.vectors[cand] - q, axis=1)
        order = np.argsort(full, kind="stable")[:k]
        r = float(full[order[-1]])
        if m < n and dp[-1] < r:  # points not yet seen could still be closer than the k-th: complete exactly
            ball = np.asarray(self.tree.query_ball_point(qp, r * (1 + 1e-6)), dtype=np.int64)
            cand = ball[self._id_codes[ball] != code]
            full = np.linalg.norm(self.vectors[cand] - q, axis=1)
            order = np.lexsort((cand, full))[:k]
        return [str(self.keys[i]) for i in cand[order]]

    def random_key(self, rng: np.random.Generator, exclude_identity: str) -> str:
        """A uniformly random face of another identity."""
        candidates = np.flatnonzero(self._id_codes != self._code(exclude_identity))
        if len(candidates) == 0:
            raise LookupError(f"no donor of an identity other than {exclude_identity!r} in the pool")
        return str(self.keys[candidates[int(rng.integers(len(candidates)))]])

    def load(self, key: str) -> FaceSample:
        """The face stored under ``key`` (image read by the pool's loader)."""
        if key not in self._index:
            raise KeyError(f"donor {key!r} is not in the pool")
        return self._loader(key)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_samples(cls, samples: Sequence[FaceSample]) -> DonorPool:
        """Pool over in-memory faces (tests, small demos); keys default to their position."""
        keys = [s.key or str(i) for i, s in enumerate(samples)]
        by_key = {k: s for k, s in zip(keys, samples, strict=True)}
        return cls(
            keys,
            [s.identity for s in samples],
            np.stack([np.asarray(s.landmarks, np.float32) for s in samples]),
            lambda k: by_key[k],
        )

    @classmethod
    def from_manifest(cls, manifest: str | Path, **where: object) -> DonorPool:
        """Pool over the face rows of a dflab manifest (default: real faces, ``label=0``).

        Identity is the row's ``identity`` column, else its ``original_id``, else its ``video_id`` (one identity per
        video, as in FF++). Keys are ``dataset:video_id:frame_index:track_id``.
        """
        from dflab.data.manifest import Manifest

        where = {"label": 0, **where}
        with Manifest(manifest, readonly=True) as m:
            rows = m.faces(**where)
            root = m.root
        if not rows:
            raise ValueError(f"no faces in {manifest} matching {where}")
        keys = [face_key(r.dataset, r.video_id, r.frame_index, r.track_id) for r in rows]
        ids = [r.identity or r.original_id or r.video_id for r in rows]
        lms = np.stack([r.landmarks_array() for r in rows])
        info = {k: (r.crop_path, r.original_crop, i, r.label) for k, r, i in zip(keys, rows, ids, strict=True)}

        def load(key: str) -> FaceSample:
            crop, orig, ident, label = info[key]
            image = read_rgb(_abs(root, crop))
            original = read_rgb(_abs(root, orig)) if orig else None
            lm = lms[keys_index[key]]
            return FaceSample(image, lm, identity=ident, key=key, original=original, label=int(label))

        keys_index = {k: i for i, k in enumerate(keys)}
        return cls(keys, ids, lms, load)


def face_key(dataset: str, video_id: str, frame_index: int, track_id: int) -> str:
    """The pool key of a manifest face row."""
    return f"{dataset}:{video_id}:{frame_index}:{track_id}"


def _abs(root: Path, p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else root / q


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB (``dflab.media.read_image`` when available, else OpenCV)."""
    try:
        from dflab.media import read_image
    except ImportError:
        read_image = None
    if read_image is not None:
        return read_image(path)
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


#: How a donor face is placed onto the target before blending (see :func:`place_donor`).
DONOR_ALIGN: tuple[str, ...] = ("shift", "similarity", "none")


def donor_align_mode(mode: object) -> str:
    """``mode`` checked against :data:`DONOR_ALIGN` (a clear error at sampling time, not at the first donor)."""
    if mode not in DONOR_ALIGN:
        raise ValueError(f"unknown donor_align {mode!r}; choose from {', '.join(DONOR_ALIGN)}")
    return str(mode)


def _reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices reflected into ``[0, n)`` without repeating the edge (OpenCV's BORDER_REFLECT_101)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * n - 2
    i = np.mod(idx, period)
    return np.where(i < n, i, period - i)


def shift_to(image: np.ndarray, src_landmarks: np.ndarray, dst_landmarks: np.ndarray, shape: Sequence[int]):
    """Move ``image`` by the whole-pixel translation that best takes its landmarks onto ``dst_landmarks``.

    Every output pixel is a copy of one donor pixel (no interpolation), so the pasted region keeps the donor's own
    pixel statistics; outside the donor the frame is reflected (BORDER_REFLECT_101). A donor of another size is
    placed, not resized.

    Shape:
        image (h, w, 3) uint8; landmarks (68, 2); returns ((H, W, 3) uint8, (68, 2) float32, (2, 3) float64).
    """
    src = np.asarray(src_landmarks, np.float64).reshape(-1, 2)
    dst = np.asarray(dst_landmarks, np.float64).reshape(-1, 2)
    dx, dy = np.rint(dst.mean(0) - src.mean(0)).astype(int)
    h, w = int(shape[0]), int(shape[1])
    ys = _reflect_index(np.arange(h) - dy, image.shape[0])
    xs = _reflect_index(np.arange(w) - dx, image.shape[1])
    matrix = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    return image[ys[:, None], xs[None, :]], (src + np.array([dx, dy])).astype(np.float32), matrix


def place_donor(
    image: np.ndarray, src_landmarks: np.ndarray, dst_landmarks: np.ndarray, shape: Sequence[int], mode: str
) -> np.ndarray:
    """Put a donor face onto the target's frame before blending.

    ``shift`` (default of every donor method): whole-pixel translation (:func:`shift_to`), no resampling. The papers
    blend the landmark-nearest frame as it is (BiG-Arts §3.3, ADDG SB-* Sec. 3.1, Face X-ray §3.3), and crops
    made by one alignment procedure already agree up to a few pixels; the whole-pixel shift removes that residual
    offset without interpolating. ``similarity``: the least-squares similarity warp (:func:`align_to`, bilinear) —
    it low-passes the donor, so the pasted region is smoother than its surroundings, a cue across the mask the
    papers' blends do not have. ``none``: the donor's pixels where they are (same size required).

    Shape:
        image (h, w, 3) uint8; landmarks (68, 2); returns (H, W, 3) uint8 for ``shape`` = (H, W[, C]).
    """
    if mode == "shift":
        return shift_to(image, src_landmarks, dst_landmarks, shape)[0]
    if mode == "similarity":
        return align_to(image, src_landmarks, dst_landmarks, shape)[0]
    if mode == "none":
        if tuple(image.shape[:2]) != (int(shape[0]), int(shape[1])):
            raise ValueError(f"donor_align='none' needs a donor of the target's size {tuple(shape[:2])}")
        return image
    raise ValueError(f"unknown donor_align {mode!r}; choose from {', '.join(DONOR_ALIGN)}")


def align_to(image: np.ndarray, src_landmarks: np.ndarray, dst_landmarks: np.ndarray, shape: Sequence[int]):
    """Warp ``image`` by the similarity transform (least squares) taking its landmarks onto ``dst_landmarks``.

    Returns the warped image, the warped landmarks and the 2x3 matrix.

    Shape:
        image (h, w, 3) uint8; landmarks (68, 2); returns ((H, W, 3) uint8, (68, 2) float32, (2, 3) float64).
    """
    import cv2

    src = np.asarray(src_landmarks, np.float32).reshape(-1, 2)
    dst = np.asarray(dst_landmarks, np.float32).reshape(-1, 2)
    matrix = similarity_matrix(src, dst)
    h, w = int(shape[0]), int(shape[1])
    warped = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    pts = src @ matrix[:, :2].T + matrix[:, 2]
    return warped, pts.astype(np.float32), matrix


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; Umeyama 1991) taking ``src`` onto ``dst``.

    Shape:
        src, dst (N, 2); returns (2, 3) float64.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var = (s0**2).sum() / len(src)
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / max(var, 1e-12)
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])

"""Training data streams read from a prepare manifest, with on-the-fly synthesised fakes.

A stream (:class:`FaceStream`) is built from a :class:`~dflab.train.config.StreamConfig` and the manifest rows it
selects. All randomness is explicit and replayable:

* :meth:`FaceStream.plan` draws, from ``(seed, stream, epoch)`` only, the epoch's items: frames-per-video subset,
  class balance (on-the-fly fakes in ``real_only`` / ``fake_source`` mode, minority oversampling in ``supervised``
  mode), shuffle, and one integer seed per item. :class:`PlanSampler` shards the plan across ranks (``set_epoch`` like
  ``DistributedSampler``) and can start mid-epoch, which is what makes a killed run resume exactly.
* :meth:`FaceStream.__getitem__` takes an item ``(row, make_fake, item_seed)`` and derives every random choice
  (synthesizer, its params, augmentation, degradation) from ``item_seed`` — so DataLoader workers, their number
  and their order do not change a batch.

Stream modes (:class:`~dflab.train.config.StreamConfig`): ``supervised`` reads the manifest's real and fake rows;
``real_only`` reads its reals and turns a fraction of items into on-the-fly fakes; ``fake_source`` reads its
*dataset fakes that have an* ``original_crop`` and turns a fraction of items into on-the-fly fakes made *from a
fake* — BiG-Arts' (Fake, Real) augmentation (``bigarts_fr``, §3.3), whose donor pool holds the manifest's reals
selected by the same split/dataset filters (targets of another identity).

Ground truth of a dataset fake (``supervised`` / ``fake_source`` items not synthesised), chosen by
``DataConfig.fake_mask``: ``dataset`` — the row's ``mask_crop``, else the DIFF mask against ``original_crop``;
``diff`` — DIFF (Dang et al. 2020; LiSiam Table VII) against the original, else ``mask_crop``; ``ssim`` — LiSiam's
SSIM mask (§III-E) against the original, else ``mask_crop``. BiG-Arts' ``mask_in``/``mask_ex`` of a dataset fake
are ``Convex(|x' − x| > γ)`` and its boundary (§3.1, :func:`dflab.synthesis.big_arts_aug.bigarts_targets`),
which need the original.

A batch is a dict: ``image`` (B,3,H,W) float normalised with the detector's mean/std, ``label`` (B,) long,
``video_id`` (list of str), plus exactly the keys the detector's ``targets`` declares
(see :data:`dflab.models.base.TARGET_KEYS`). ``__getitem__`` never catches an error: a missing crop raises
:class:`~dflab.errors.MediaError` naming the file.

A *mix* (``DataConfig.mixes``) composes every batch from several streams in fixed proportions (BiG-Arts §4.1:
50 % reals, the fakes a third each dataset / (Real, Real) / (Fake, Real)): the loop draws :func:`mix_counts` items
from each stream's own iterator and joins them with :func:`concat_batches`; the mixed batch also carries
``stream`` (list of str, the stream of each item).

*Annotated masks* (LAE's active learning, Du et al. 2020 Algorithm 1): a stream whose ``annotations`` is set (a dict
``face_key -> mask file``, set by the LAE schedule: empty in stage 1, the selected fakes' masks after selection)
gives a dataset fake the annotated mask when it has one and an all-zero mask otherwise (no mask file or original
crop is needed), and every item a ``mask_valid`` (bool) saying whether its mask is an annotation — the attention
loss then runs over the annotated fakes only, every other item still trains the rest.

Extension points: register a degradation for the ``degraded`` target with :data:`DEGRADERS`
(``fn(rng, image_uint8) -> image_uint8``); the augmentation op ``{"name": "Degrade", "degrader": NAME, "p": P}``
applies one to the training images themselves (:func:`degrade_op`); synthesizers come from
``dflab.synthesis.SYNTHESIZERS``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from dflab.data.manifest import FaceRow, Manifest
from dflab.errors import ConfigError, MediaError
from dflab.registry import Registry
from dflab.synthesis.base import FaceSample
from dflab.synthesis.masks import diff_mask, ssim_mask
from dflab.train.config import DataConfig, StreamConfig

Item = tuple[int, int, int]  # (row index, make_fake 0/1, item seed)

#: ground-truth ``mask`` of a dataset fake (``DataConfig.fake_mask``; see the module docstring)
FAKE_MASKS = ("dataset", "diff", "ssim")

#: name -> fn(rng, image uint8 HxWx3) -> degraded image uint8, for the ``degraded`` target (LiSiam's paired view).
DEGRADERS: Registry[Callable[[np.random.Generator, np.ndarray], np.ndarray]] = Registry("degrader")


@DEGRADERS.register("jpeg_blur")
def _jpeg_blur(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A generic quality degradation: Gaussian blur (σ∈[0,1.5]) then JPEG (quality ∈ [30,90])."""
    out = image
    sigma = float(rng.uniform(0.0, 1.5))
    if sigma > 0.1:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    q = int(rng.integers(30, 91))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@DEGRADERS.register("iqd")
def _iqd(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """LiSiam's image-quality degradation (IQD: JPEG, resize, blur in random order; ``dflab.synthesis.iqd``)."""
    import dflab.synthesis  # noqa: F401  (fills SYNTHESIZERS)
    from dflab.synthesis.base import SYNTHESIZERS

    iqd = SYNTHESIZERS.get("iqd")
    face = FaceSample(image=image, landmarks=np.zeros((68, 2), np.float32))
    return iqd.apply(face, iqd.sample_params(rng, face), None).image


def degrade_op(degrader: str, p: float = 1.0) -> Any:
    """A :data:`DEGRADERS` entry as an albumentations image-only op (augmentation ``{"name": "Degrade", "degrader":
    NAME, "p": P}``), e.g. LiSiam Table V's "Xception + IQD". Its randomness comes from the op's own generator,
    which the stream seeds per item, so an item replays exactly.
    """
    import albumentations as A

    fn = DEGRADERS.get(degrader)

    class Degrade(A.ImageOnlyTransform):
        def get_params(self) -> dict[str, Any]:
            return {"seed": int(self.random_generator.integers(0, 2**31 - 1))}

        def apply(self, img: np.ndarray, seed: int = 0, **params: Any) -> np.ndarray:
            return fn(np.random.default_rng(seed), np.ascontiguousarray(img))

        def get_transform_init_args_names(self) -> tuple[str, ...]:
            return ()

    return Degrade(p=p)


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; raises :class:`MediaError` when it is missing or unreadable."""
    if not path.exists():
        raise MediaError(path, "missing")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(path, "decode_error", "OpenCV could not decode the crop")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_gray01(path: Path) -> np.ndarray:
    """Read a mask image as (H, W) float32 in [0, 1]."""
    if not path.exists():
        raise MediaError(path, "missing")
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise MediaError(path, "decode_error", "OpenCV could not decode the mask")
    return img.astype(np.float32) / 255.0


def _stream_hash(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def effective_split(
    row: FaceRow, unsplit_val_fraction: float, val_from_train: Mapping[str, float] | None = None
) -> str:
    """The row's split. With ``unsplit_val_fraction > 0`` a row without one (``""``) goes to ``val`` for a hashed
    fraction of videos and to ``train`` otherwise; with 0 it stays ``""`` (a stream may list ``""`` in its split).
    A ``train`` row of a dataset in ``val_from_train`` goes to ``val`` for that hashed fraction of its videos
    (``DataConfig.val_from_train``, e.g. BiG-Arts' 8:2 split of Celeb-DF's training videos, §4.1)."""
    h = zlib.crc32(f"{row.dataset}/{row.video_id}".encode()) / 2**32
    if row.split == "train" and val_from_train and row.dataset in val_from_train:
        return "val" if h < val_from_train[row.dataset] else "train"
    if row.split or unsplit_val_fraction <= 0:
        return row.split
    return "val" if h < unsplit_val_fraction else "train"


def select_rows(
    manifest: Manifest,
    cfg: StreamConfig,
    unsplit_val_fraction: float = 0.0,
    val_from_train: Mapping[str, float] | None = None,
) -> list[FaceRow]:
    """Manifest rows a stream reads (split / dataset / method filters; reals only in ``real_only`` mode; fakes with
    an ``original_crop`` only in ``fake_source`` mode — a fake without its original cannot be a (Fake, Real) source)."""
    where: dict[str, Any] = {}
    if cfg.datasets:
        where["dataset"] = list(cfg.datasets)
    if cfg.methods:
        where["method"] = list(cfg.methods)
    if cfg.mode == "real_only":
        where["label"] = 0
    elif cfg.mode == "fake_source":
        where["label"] = 1
    rows = manifest.faces(**where)
    if cfg.mode == "fake_source":
        rows = [r for r in rows if r.original_crop]
    excluded = set(cfg.exclude_videos)
    splits = set(cfg.splits())
    return [
        r
        for r in rows
        if r.video_id not in excluded and effective_split(r, unsplit_val_fraction, val_from_train) in splits
    ]


def select_donor_rows(
    manifest: Manifest,
    cfg: StreamConfig,
    unsplit_val_fraction: float = 0.0,
    val_from_train: Mapping[str, float] | None = None,
) -> list[FaceRow]:
    """Real rows a stream's donor pool holds: the stream's own rows in ``real_only`` mode; in ``fake_source`` mode
    the manifest's reals under the stream's split / dataset / video filters (``methods`` selects fakes only)."""
    if cfg.mode != "fake_source":
        return select_rows(manifest, cfg, unsplit_val_fraction, val_from_train)
    reals = cfg.model_copy(update={"mode": "real_only", "methods": None})
    return select_rows(manifest, reals, unsplit_val_fraction, val_from_train)


class FaceStream(Dataset):
    """A map-style dataset over a stream's rows; indexed by plan items ``(row, make_fake, item_seed)``.

    Args:
        rows: the stream's manifest rows.
        cfg: the stream's config.
        root: the manifest folder (crop paths are relative to it).
        size: output crop size.
        targets: the detector's declared target keys.
        mean: normalisation (the detector's ``input_spec``).
        std: normalisation (the detector's ``input_spec``).
        seed: run seed; the plan depends on ``(seed, name, epoch)`` only.
        name: stream name.
        pool: donor pool for blending synthesizers (``None`` when none is needed).
        fake_mask: ground truth ``mask`` of a dataset fake: ``dataset``, ``diff`` or ``ssim`` (module docstring).
    """

    def __init__(
        self,
        rows: Sequence[FaceRow],
        cfg: StreamConfig,
        *,
        root: Path,
        size: int,
        targets: frozenset[str] = frozenset(),
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        seed: int = 0,
        name: str = "default",
        pool: Any = None,
        fake_mask: str = "dataset",
    ) -> None:
        if not rows:
            hint = " with an original_crop" if cfg.mode == "fake_source" else ""
            raise ConfigError(f"stream {name!r} selects no manifest rows{hint} (split={cfg.split}, mode={cfg.mode})")
        if fake_mask not in FAKE_MASKS:
            raise ConfigError(f"fake_mask must be one of {FAKE_MASKS}; got {fake_mask!r}")
        self.fake_mask = fake_mask
        self.rows = list(rows)
        self.cfg = cfg
        self.root = Path(root)
        self.size = int(size)
        self.targets = frozenset(targets)
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)
        self.seed = int(seed)
        self.name = name
        self.pool = pool
        if "degraded" in self.targets and not cfg.degrade:
            raise ConfigError(f"the detector needs a 'degraded' view but stream {name!r} sets no degrade")
        self.degrade = DEGRADERS.get(cfg.degrade) if cfg.degrade else None
        self.synths: list[Any] = []
        if cfg.mode in ("real_only", "fake_source") and cfg.fake_ratio > 0:
            import dflab.synthesis  # noqa: F401  (fills SYNTHESIZERS)
            from dflab.synthesis.base import SYNTHESIZERS

            self.synths = [SYNTHESIZERS.get(n) for n in cfg.synthesizers]
        w = np.asarray(cfg.synth_weights or [1.0] * len(self.synths), np.float64)
        self.synth_p = w / w.sum() if len(w) else w
        ids = sorted({r.identity for r in self.rows if r.identity})
        self.identity_index = {k: i for i, k in enumerate(ids)}
        self.aug = self._build_aug()
        #: face_key -> annotated mask file, or None (see the module docstring, "Annotated masks")
        self.annotations: dict[str, str] | None = None

    # ------------------------------------------------------------------ plan (all per-epoch randomness)
    def plan(self, epoch: int, shuffle: bool = True) -> list[Item]:
        """The epoch's items, a pure function of ``(seed, name, epoch)``."""
        rng = np.random.default_rng([self.seed, _stream_hash(self.name), int(epoch)])
        by_video: dict[tuple[str, str], list[int]] = {}
        for i, r in enumerate(self.rows):
            by_video.setdefault((r.dataset, r.video_id), []).append(i)
        chosen: list[int] = []
        fpv = self.cfg.frames_per_video
        # a fixed subset (resample_frames=False) comes from a generator without the epoch
        frame_rng = rng if self.cfg.resample_frames else np.random.default_rng([self.seed, _stream_hash(self.name)])
        for key in sorted(by_video):
            idx = by_video[key]
            if fpv is not None and len(idx) > fpv:
                idx = sorted(frame_rng.choice(idx, size=fpv, replace=False).tolist())
            chosen.extend(idx)
        r = self.cfg.fake_ratio
        items: list[tuple[int, int]]
        if self.cfg.mode in ("real_only", "fake_source"):
            # every chosen row once as itself, plus n_fake on-the-fly fakes made from chosen rows so that they are a
            # fraction r (real_only: reals → fakes; fake_source: dataset fakes → (Fake, Real) fakes)
            n_fake = 0 if r <= 0 else (len(chosen) if r >= 1 else round(len(chosen) * r / (1 - r)))
            fake_src = rng.choice(chosen, size=n_fake, replace=n_fake > len(chosen)).tolist() if n_fake else []
            items = ([] if r >= 1 else [(i, 0) for i in chosen]) + [(i, 1) for i in fake_src]
        else:
            reals = [i for i in chosen if self.rows[i].label == 0]
            fakes = [i for i in chosen if self.rows[i].label == 1]
            if self.cfg.balance and reals and fakes and 0 < r < 1:
                want_f = round(len(reals) * r / (1 - r))
                if want_f > len(fakes):
                    fakes = fakes + rng.choice(fakes, size=want_f - len(fakes), replace=True).tolist()
                else:
                    want_r = round(len(fakes) * (1 - r) / r)
                    if want_r > len(reals):
                        reals = reals + rng.choice(reals, size=want_r - len(reals), replace=True).tolist()
            items = [(i, 0) for i in reals + fakes]
        order = rng.permutation(len(items)) if shuffle else np.arange(len(items))
        seeds = rng.integers(0, 2**31 - 1, size=len(items))
        return [(int(items[k][0]), int(items[k][1]), int(s)) for k, s in zip(order, seeds, strict=True)]

    def __len__(self) -> int:
        return len(self.rows)

    # ------------------------------------------------------------------ one item
    def _build_aug(self) -> Any:
        if not self.cfg.augment.ops:
            return None
        import albumentations as A

        ops = []
        for spec in self.cfg.augment.ops:
            spec = dict(spec)
            name = spec.pop("name", None)
            if name == "Degrade":  # a dflab degrader (DEGRADERS), not an albumentations name
                ops.append(degrade_op(**spec))
                continue
            if not name or not hasattr(A, name):
                raise ConfigError(f"unknown albumentations transform {name!r} in stream {self.name!r}")
            ops.append(getattr(A, name)(**spec))
        return A.Compose(ops, seed=self.seed)

    def _face(self, row: FaceRow) -> FaceSample:
        image = read_rgb(self.root / row.crop_path if not Path(row.crop_path).is_absolute() else Path(row.crop_path))
        lm = row.landmarks_array()
        original = None
        if row.original_crop:
            original = read_rgb(self._abs(row.original_crop))
        return FaceSample(
            image=image,
            landmarks=lm,
            identity=_identity(row),
            key=face_key(row),
            original=original,
            label=int(row.label),
        )

    def _abs(self, p: str) -> Path:
        return Path(p) if Path(p).is_absolute() else self.root / p

    def __getitem__(self, item: Item) -> dict[str, Any]:
        row_i, make_fake, item_seed = item
        row = self.rows[row_i]
        rng = np.random.default_rng(item_seed)
        face = self._face(row)
        h, w = face.image.shape[:2]
        masks: dict[str, np.ndarray] = {}
        category = -1
        if make_fake:
            k = int(rng.choice(len(self.synths), p=self.synth_p))
            synth = self.synths[k]
            kw = self.cfg.synth_kwargs.get(self.cfg.synthesizers[k], {})
            params = synth.sample_params(rng, face, self.pool, **kw)
            res = synth.apply(face, params, self.pool)
            image, label = res.image, int(res.label)
            masks["mask"] = np.asarray(res.mask, np.float32)
            masks.update({n: np.asarray(m, np.float32) for n, m in res.masks.items()})
            category = self._category_index(synth, getattr(params, "category", k)) if label else -1
        else:
            image, label = face.image, int(row.label)
            if label == 0:
                masks["mask"] = np.zeros((h, w), np.float32)
            elif self.annotations is not None:
                annotated = self.annotations.get(face.key)
                masks["mask"] = read_gray01(self._abs(annotated)) if annotated else np.zeros((h, w), np.float32)
            elif self.targets & {"mask", "boundary"}:
                masks["mask"] = self._fake_mask(row, face)
            if label == 1 and self.targets & {"mask_in", "mask_ex"}:
                if face.original is None:
                    raise MediaError(
                        self._abs(row.crop_path), "missing", "fake row has no original_crop for mask_in/mask_ex"
                    )
                from dflab.synthesis.big_arts_aug import bigarts_targets

                # §3.1: M_in = Convex(|x' − x| > γ), M_ex = D(M_in) − E(M_in); element scaled like the synthesizers'
                masks.update(bigarts_targets(face))
        for key in ("mask_in", "mask_ex"):
            if key in self.targets and key not in masks:
                if label == 0:
                    masks[key] = np.zeros((h, w), np.float32)
                else:
                    raise ConfigError(f"the detector needs {key!r} but the sample's synthesizer does not produce it")
        batch = self._finish(image, label, masks, category, row, rng, item_seed)
        if self.annotations is not None:
            batch["mask_valid"] = torch.tensor(bool(label and not make_fake and face.key in self.annotations))
        return batch

    def dataset_mask(self, row_i: int) -> np.ndarray:
        """The forgery mask of dataset fake ``row_i`` by ``fake_mask`` (its mask file, or the difference to its
        original crop), at the crop's resolution, whatever ``annotations`` say and without augmentation: what a mask
        oracle answers (:class:`dflab.train.active.StreamMaskOracle`).

        Raises:
            MediaError: the row has neither a mask file nor an original crop.
        """
        row = self.rows[row_i]
        return self._fake_mask(row, self._face(row))

    def _fake_mask(self, row: FaceRow, face: FaceSample) -> np.ndarray:
        """Ground-truth ``mask`` of a dataset fake by ``fake_mask``; the original crop shares the fake's box."""
        kind = self.fake_mask
        if face.original is not None and (kind != "dataset" or not row.mask_crop):
            if kind == "ssim":
                return ssim_mask(face.image, face.original)  # LiSiam §III-E: (1 − SSIM)·255 > 20
            return diff_mask(face.image, face.original)  # DIFF (Dang et al. CVPR 2020; LiSiam Table VII)
        if row.mask_crop:
            return read_gray01(self._abs(row.mask_crop))
        raise MediaError(
            self._abs(row.crop_path), "missing", "fake row has neither mask_crop nor original_crop for a mask"
        )

    @staticmethod
    def _category_index(synth: Any, category: Any) -> int:
        """Index of a sample's category: its position in the synthesizer's ``categories`` when it names one."""
        if isinstance(category, str):
            names = list(getattr(synth, "categories", ()))
            if category not in names:
                raise ConfigError(f"category {category!r} is not one of {synth!r}'s categories {names}")
            return names.index(category)
        return int(category)

    def _finish(
        self,
        image: np.ndarray,
        label: int,
        masks: dict[str, np.ndarray],
        category: int,
        row: FaceRow,
        rng: np.random.Generator,
        item_seed: int,
    ) -> dict[str, Any]:
        wanted = [k for k in ("mask", "mask_in", "mask_ex", "boundary") if k in self.targets and k in masks]
        derive_boundary = "boundary" in self.targets and "boundary" not in masks
        if derive_boundary and "mask" not in wanted:
            wanted.append("mask")
        if image.shape[0] != self.size or image.shape[1] != self.size:
            image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
        mlist = []
        for k in wanted:
            m = masks[k]
            if m.shape != (self.size, self.size):
                m = cv2.resize(m, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
            mlist.append(m)
        if self.aug is not None:
            self.aug.set_random_seed(item_seed)
            out = self.aug(image=image, masks=mlist) if mlist else self.aug(image=image)
            image = out["image"]
            mlist = list(out.get("masks", mlist))
        batch: dict[str, Any] = {
            "image": self._to_tensor(image),
            "label": torch.tensor(label, dtype=torch.long),
            "video_id": row.video_id,
        }
        final = {k: np.ascontiguousarray(m, dtype=np.float32) for k, m in zip(wanted, mlist, strict=True)}
        if derive_boundary:
            m = final["mask"]
            final["boundary"] = 4.0 * m * (1.0 - m)  # Face X-ray Eq. (2): B = 4·M·(1−M), on the final mask
        for k in ("mask", "mask_in", "mask_ex", "boundary"):
            if k in self.targets:
                batch[k] = torch.from_numpy(final[k])[None]
        if "degraded" in self.targets:
            assert self.degrade is not None
            batch["degraded"] = self._to_tensor(self.degrade(rng, np.ascontiguousarray(image)))
        if "category" in self.targets:
            batch["category"] = torch.tensor(category, dtype=torch.long)
        if "identity" in self.targets:
            batch["identity"] = torch.tensor(self.identity_index.get(row.identity, -1), dtype=torch.long)
        return batch

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        x = image.astype(np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((x - self.mean) / self.std)


def face_key(row: FaceRow) -> str:
    """The key of a face row in a donor pool (``dflab.synthesis.donors.face_key``)."""
    from dflab.synthesis.donors import face_key as _key

    return _key(row.dataset, row.video_id, row.frame_index, row.track_id)


def _identity(row: FaceRow) -> str:
    """Identity as the donor pool defines it: ``identity``, else ``original_id``, else ``video_id``."""
    return row.identity or row.original_id or row.video_id


class PlanSampler(Sampler[Item]):
    """Yields a stream's epoch plan, sharded across ranks, optionally from a start offset (for resume).

    Like ``DistributedSampler``: call :meth:`set_epoch` every epoch; with ``world > 1`` the plan is padded by
    repetition to a multiple of ``world`` (training) and rank ``r`` gets items ``r, r+world, …``.
    """

    def __init__(
        self, stream: FaceStream, *, rank: int = 0, world: int = 1, shuffle: bool = True, pad: bool = True
    ) -> None:
        self.stream = stream
        self.rank, self.world = rank, world
        self.shuffle, self.pad = shuffle, pad
        self.epoch = 0
        self.start = 0
        self.limit: int | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_start(self, start: int) -> None:
        self.start = int(start)

    def _mine(self) -> list[Item]:
        plan = self.stream.plan(self.epoch, shuffle=self.shuffle)
        if self.limit is not None:
            plan = plan[: self.limit]
        if self.world > 1:
            if self.pad and len(plan) % self.world:
                plan = plan + plan[: self.world - len(plan) % self.world]
            plan = plan[self.rank :: self.world]
        return plan

    def __iter__(self) -> Iterator[Item]:
        yield from self._mine()[self.start :]

    def __len__(self) -> int:
        return max(0, len(self._mine()) - self.start)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep strings (``video_id``) as a list."""
    out: dict[str, Any] = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        out[k] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out


def mix_counts(weights: dict[str, float], batch_size: int) -> dict[str, int]:
    """Items per batch from each stream of a mix (``DataConfig.mixes``): ``batch_size · w / Σw`` rounded by largest
    remainder (ties to the stream listed first), so the counts sum to ``batch_size`` exactly; weight-0 streams are
    left out. E.g. BiG-Arts §4.1 ``{real: 3, orig: 1, rr: 1, fr: 1}`` at 32 → ``{real: 16, orig: 6, rr: 5, fr: 5}``.

    Raises:
        ConfigError: a stream with a positive weight would get no item (batch too small for the mix).
    """
    live = {k: float(w) for k, w in weights.items() if w > 0}
    total = sum(live.values())
    if not live or total <= 0:
        raise ConfigError(f"a mix needs a positive weight; got {weights}")
    exact = {k: batch_size * w / total for k, w in live.items()}
    counts = {k: int(np.floor(v + 1e-9)) for k, v in exact.items()}
    order = sorted(live, key=lambda k: (-(exact[k] - counts[k]), list(live).index(k)))
    for k in order[: batch_size - sum(counts.values())]:
        counts[k] += 1
    empty = [k for k, n in counts.items() if n < 1]
    if empty:
        raise ConfigError(f"batch size {batch_size} gives no item to stream(s) {empty} of the mix {weights}")
    return counts


def concat_batches(batches: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate collated batches with the same keys along the batch axis (tensors ``cat``, lists joined)."""
    keys = list(batches[0])
    if any(list(b) != keys for b in batches[1:]):
        raise ConfigError(f"cannot mix batches with different keys: {[sorted(b) for b in batches]}")
    out: dict[str, Any] = {}
    for k in keys:
        vals = [b[k] for b in batches]
        out[k] = torch.cat(vals) if isinstance(vals[0], torch.Tensor) else [v for part in vals for v in part]
    return out


def build_pool(root: Path, rows: Sequence[FaceRow]) -> Any:
    """A nearest-landmark donor pool over ``rows`` (:class:`dflab.synthesis.donors.DonorPool`); images load lazily."""
    from dflab.synthesis.donors import DonorPool

    keys = [face_key(r) for r in rows]
    by_key = dict(zip(keys, rows, strict=True))

    def load(key: str) -> FaceSample:
        r = by_key[key]
        p = Path(r.crop_path)
        image = read_rgb(p if p.is_absolute() else root / p)
        return FaceSample(image, r.landmarks_array(), identity=_identity(r), key=key, label=int(r.label))

    lms = np.stack([r.landmarks_array() for r in rows])
    return DonorPool(keys, [_identity(r) for r in rows], lms, load)


def build_stream(
    manifest: Manifest,
    cfg: StreamConfig,
    data: DataConfig,
    *,
    targets: frozenset[str],
    mean: Sequence[float],
    std: Sequence[float],
    seed: int,
    name: str,
) -> FaceStream:
    """Select rows, build the donor pool if a synthesizer needs one, and return the stream.

    The pool holds real rows: the stream's own in ``real_only`` mode, the manifest's reals under the stream's
    filters in ``fake_source`` mode (:func:`select_donor_rows`).
    """
    rows = select_rows(manifest, cfg, data.unsplit_val_fraction, data.val_from_train)
    pool = None
    if cfg.mode in ("real_only", "fake_source") and cfg.fake_ratio > 0 and cfg.donor_pool:
        donors = (
            rows
            if cfg.mode == "real_only"
            else select_donor_rows(manifest, cfg, data.unsplit_val_fraction, data.val_from_train)
        )
        if not donors:
            raise ConfigError(f"stream {name!r} needs real donor rows for its pool but its filters select none")
        pool = build_pool(manifest.root, donors)
    return FaceStream(
        rows,
        cfg,
        root=manifest.root,
        size=data.size,
        targets=targets,
        mean=mean,
        std=std,
        seed=seed,
        name=name,
        pool=pool,
        fake_mask=data.fake_mask,
    )

"""``make bench``: samples per second of every synthesizer / category at 256 px (sample_params + apply, one core's
worth of work per call, donor I/O excluded: the pool holds in-memory faces), and the donor search over 100k faces."""

from __future__ import annotations

import time

import cv2
import numpy as np


def _faces():
    """A real face (skimage astronaut, landmarks by dlib), jittered copies as other identities, and a fake of it."""
    from skimage import data

    from dflab.synthesis import DonorPool, FaceSample
    from dflab.synthesis import masks as mk
    from dflab.synthesis._faces import face_sample

    face = face_sample(data.astronaut(), size=256, identity="astronaut", key="astronaut")
    rng = np.random.default_rng(0)
    donors = []
    for i in range(16):
        m = cv2.getRotationMatrix2D((128, 128), rng.uniform(-8, 8), rng.uniform(0.9, 1.1))
        img = cv2.warpAffine(face.image, m, (256, 256), borderMode=cv2.BORDER_REFLECT101)
        lm = (face.landmarks @ m[:, :2].T + m[:, 2]).astype(np.float32)
        donors.append(FaceSample(img, lm, identity=f"d{i}", key=f"d{i}"))
    region = mk.hull_mask(face.landmarks, face.image.shape, range(17, 68))
    fake = FaceSample(
        mk.blend(cv2.GaussianBlur(face.image, (0, 0), 3), face.image, region),
        face.landmarks,
        identity="astronaut",
        key="fake",
        original=face.image,
        label=1,
    )
    return face, fake, DonorPool.from_samples(donors)


def _rate(fn, min_time: float = 1.0, min_n: int = 10) -> float:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while n < min_n or time.perf_counter() - t0 < min_time:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def run() -> dict:
    from dflab.synthesis import SYNTHESIZERS, degrade
    from dflab.synthesis.addg import CATEGORIES
    from dflab.synthesis.donors import DonorPool
    from dflab.synthesis.partial import REGIONS

    face, fake, pool = _faces()
    rng = np.random.default_rng(0)
    jobs = [(f"addg/{c}", "addg", face, {"category": c}) for c in CATEGORIES]
    jobs += [(n, n, face, {}) for n in ("bigarts_rr", "bi", "fwa", "iqd")]
    jobs += [("bigarts_fr", "bigarts_fr", fake, {})]
    jobs += [(f"partial/{r}", "partial", fake, {"category": r}) for r in REGIONS]
    rates = {}
    for title, name, f, kw in jobs:
        synth = SYNTHESIZERS.get(name)
        rates[title] = round(
            _rate(lambda s=synth, f=f, kw=kw: s.apply(f, s.sample_params(rng, f, pool, **kw), pool)), 1
        )
    img = face.image
    deg = {}
    for name, level in [("jpeg", 75), ("blur", 0.5), ("rescale", 0.5), ("noise", 5.0), ("h264_qp", 23)]:
        deg[name] = round(_rate(lambda n=name, lv=level: degrade.degrade(n, img, lv)), 1)
    # donor search over 100k synthetic landmark sets shaped like real ones (mean shape + modes + pose + noise)
    r = np.random.default_rng(1)
    n = 100_000
    lms = face.landmarks[None] + np.tensordot(r.normal(0, 1, (n, 8)), r.normal(0, 4, (8, 68, 2)), axes=1)
    lms = lms * r.uniform(0.8, 1.2, (n, 1, 1)) + r.normal(0, 1, (n, 68, 2))
    t0 = time.perf_counter()
    big = DonorPool(
        [f"k{i}" for i in range(n)], [f"id{i % 5000}" for i in range(n)], lms.astype(np.float32), lambda k: None
    )
    build_s = time.perf_counter() - t0
    q = 0

    def query() -> None:
        nonlocal q
        big.nearest(lms[q % n], f"id{q % 5000}")
        q += 1

    return {
        "size_px": 256,
        "samples_per_s": rates,
        "degradations_per_s": deg,
        "donor_pool_100k_build_s": round(build_s, 2),
        "donor_nearest_100k_queries_per_s": round(_rate(query), 1),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))

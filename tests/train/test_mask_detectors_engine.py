"""BiG-Arts and LiSiam tiny recipes through the real training loop on real faces from ../shared/data: the
on-the-fly (Real, Real) / BI fakes supply ``mask_in``/``mask_ex``/``mask``, ``lisiam_iqd`` the ``degraded`` view, the
logged loss is each paper's weighted sum of its logged parts (BiG-Arts Eq. 2, LiSiam Eq. 19), and LiSiam's three
phases switch in ``metrics.csv`` with the parts each phase trains."""

from __future__ import annotations

import csv

import pytest

VIDEOS = ["liveportrait_d18", "liveportrait_d19", "retalking_3", "retalking_5"]  # four people, short clips
RUN = ["data.size=64", "train.progress=false", "data.batch_size=4", "train.log_every=1", "data.num_workers=0"]
# the prepared folder has no official split (""): train and validate on it (plumbing, not a measurement)
RUN += ["train.epochs=1", "data.unsplit_val_fraction=0.0", 'data.streams.default.split=[""]', 'data.val.split=[""]']
RUN += ["train.max_val_items=8"]
RUN += ["data.streams.default.frames_per_video=3", "data.val.frames_per_video=2"]


@pytest.fixture(scope="module")
def real_faces(shared_data, tmp_path_factory):
    from dflab.data.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("rv")
    (root / "real").mkdir()
    for v in VIDEOS:
        (root / "real" / f"{v}.mp4").symlink_to(shared_data / "real_videos" / f"{v}.mp4")
    out = root / "prep"
    prepare_dataset("folder", root, out, frames=3, size=96, progress=False)
    return out


def _train(name, manifest, run_dir, extra):
    from dflab.compat import ensure_torchvision
    from dflab.train.loop import Trainer
    from dflab.train.recipes import load_recipe

    ensure_torchvision()
    cfg = load_recipe(name, [f"data.manifest={manifest}", *RUN, *extra])
    tr = Trainer(cfg, run_dir)
    summary = tr.fit()
    tr.close()
    with open(run_dir / "metrics.csv") as fh:
        rows = list(csv.reader(fh))[1:]
    return summary, rows


@pytest.mark.slow
def test_big_arts_tiny_rr_trains_on_real_faces(real_faces, tmp_path):
    summary, rows = _train("big_arts_tiny_rr", real_faces, tmp_path / "ba", ["train.steps_per_epoch=3"])
    assert summary["steps"] == 3 and len(rows) == 3
    # step, epoch, phase, stream, loss, cls, in, ex ...: Eq. 2 with λ_In = λ_Ex = 15, λ_Cls = 1 (§4.1)
    for r in rows:
        loss, cls, l_in, l_ex = (float(v) for v in r[4:8])
        assert loss == pytest.approx(cls + 15 * l_in + 15 * l_ex, rel=1e-4)
        assert l_ex > 0  # (R, R) fakes carry a boundary M_Ex = D(M) − E(M)
    assert (tmp_path / "ba" / "best" / "card.json").exists() or (tmp_path / "ba" / "last" / "card.json").exists()


@pytest.mark.slow
def test_lisiam_tiny_three_phases_on_real_faces(real_faces, tmp_path):
    extra = ["train.steps_per_epoch=6", "schedule.kwargs.seg=1", "schedule.kwargs.cls=1", "schedule.kwargs.all=1"]
    summary, rows = _train("lisiam_tiny", real_faces, tmp_path / "ls", extra)
    assert summary["steps"] == 6
    assert [r[2] for r in rows] == ["seg", "seg", "cls", "cls", "all", "all"]
    with open(tmp_path / "ls" / "metrics.csv") as fh:
        named = list(csv.DictReader(fh))

    def part(r, k):
        v = r.get(k, "")
        return float(v) if v not in ("", "nan") else None

    for r in named:  # Eq. 19 per phase (§IV-B): seg = L_seg + L_li, cls = L_cls, all = the three
        li, cls, seg = part(r, "li"), part(r, "cls1"), part(r, "seg1")
        expect = {"seg": (li or 0) + (seg or 0), "cls": cls, "all": (li or 0) + (cls or 0) + (seg or 0)}[r["phase"]]
        assert (cls is None) == (r["phase"] == "seg") and (seg is None) == (r["phase"] == "cls")
        assert float(r["loss"]) == pytest.approx(expect, rel=1e-4)

"""torchvision imports on the CPU torch (patched only when needed) and the pure-torch NMS matches a brute force."""

from __future__ import annotations

import torch

from dflab.compat import ensure_torchvision, nms


def _brute_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> list[int]:
    order = sorted(range(len(boxes)), key=lambda i: -float(scores[i]))
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            a, b = boxes[i], boxes[j]
            iw = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
            ih = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
            inter = iw * ih
            union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
            if inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def test_nms_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 100
    wh = torch.rand(60, 2, generator=g) * 40 + 5
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(60, generator=g)
    for thr in (0.1, 0.5, 0.8):
        assert nms(boxes, scores, thr).tolist() == _brute_nms(boxes, scores, thr)
    assert nms(torch.empty(0, 4), torch.empty(0), 0.5).numel() == 0


def test_torchvision_imports_and_its_nms_works():
    tv = ensure_torchvision()
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert tv.ops.nms(boxes, scores, 0.5).tolist() == [0, 2]

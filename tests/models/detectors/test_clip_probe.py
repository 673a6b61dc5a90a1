"""clip_probe specifics (the contract is in test_contract): installed linear probes, the patch map, the cache."""

from __future__ import annotations

import numpy as np
import torch

from dflab.models.base import build_detector


def _tiny():
    torch.manual_seed(0)
    return build_detector("clip_probe_tiny", hidden=0, tokens=["cls", "mean"], cache_size=64)


def test_set_linear_head_is_the_fitted_probe():
    """The fake − real logit must equal coef · (x − mean) / sqrt(var + eps) + intercept (what sklearn fitted)."""
    m = _tiny().eval()
    x = torch.randn(5, 3, 64, 64)
    feats = m.encode(x).numpy()
    rng = np.random.default_rng(0)
    mean, var = feats.mean(0), feats.var(0) + 0.1
    coef, b = rng.normal(size=feats.shape[1]).astype(np.float32), 0.7
    m.set_linear_head(mean, var, coef, b)
    logits = m(x)["logits"].detach().numpy()
    expect = ((feats - mean) / np.sqrt(var + m.norm.eps)) @ coef + b
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], expect, rtol=1e-4, atol=1e-4)


def test_patch_map_sums_to_the_mean_token_contribution():
    """Σ_p patch_map = the mean-token part of the logit: the map explains exactly that share of the score."""
    m = _tiny().eval()
    x = torch.randn(3, 3, 64, 64)
    feats = m.encode(x).numpy()
    d = feats.shape[1]
    rng = np.random.default_rng(1)
    coef = rng.normal(size=d).astype(np.float32)
    mean, var = feats.mean(0), feats.var(0) + 0.5
    m.set_linear_head(mean, var, coef, 0.0)
    out = m(x)
    z = (feats - mean) / np.sqrt(var + m.norm.eps)
    w = m.width
    mean_part = sum(z[:, j : j + w] @ coef[j : j + w] for j in range(w, d, 2 * w))  # the "mean" slot of each block
    np.testing.assert_allclose(out["patch_map"].sum(dim=(1, 2, 3)).numpy(), mean_part, rtol=1e-3, atol=1e-3)
    maps = m.explain_maps(out)["patch_evidence"]
    assert maps.shape == (3, 1, 4, 4) and float(maps.min()) >= 0


def test_features_are_encoded_once_per_run_while_training():
    m = _tiny().train()
    calls = []
    orig = m._hidden
    m._hidden = lambda images: calls.append(len(images)) or orig(images)  # type: ignore[method-assign]
    x = torch.randn(4, 3, 64, 64)
    a = m(x)["features"]
    b = m(torch.cat([x[:2], torch.randn(1, 3, 64, 64)]))["features"]
    assert calls == [4, 1], "only the unseen crop is encoded again"
    torch.testing.assert_close(a[:2], b[:2])

"""LAE specifics: Table 2 shapes, a_T/a_F decision, discriminator/autoencoder gradient separation, CAM, stages."""

from __future__ import annotations

import pytest
import torch

from dflab.losses.lae import discriminator_loss
from dflab.models.base import VARIANTS, build_detector


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return build_detector("lae_tiny").train()


def _batch(b: int = 4, s: int = 64):
    mask = torch.zeros(b, 1, s, s)
    mask[b // 2 :, :, s // 4 : 3 * s // 4, s // 4 : 3 * s // 4] = 1
    return {"image": torch.randn(b, 3, s, s), "label": torch.tensor([0] * (b // 2) + [1] * (b - b // 2)), "mask": mask}


def test_shapes(model):
    out = model(torch.randn(2, 3, 64, 64))
    assert out["z"].shape == (2, 16) and out["recon"].shape == (2, 3, 64, 64)
    assert out["cam"].shape == (2, 1, 64, 64) and out["features"].shape[-1] == 64 // 16
    assert out["recon"].abs().max() <= 1.0


def test_score_follows_a_t_vs_a_f(model):
    logits = torch.tensor([[0.8, 0.1], [0.1, 0.3]])
    assert model.score({"logits": logits}).gt(0.5).tolist() == [False, True]


def test_stage1_gradients_separate_autoencoder_and_discriminator(model):
    batch = _batch()
    out = model(batch["image"])
    parts = model.compute_loss(batch, out, stage="stage1")
    assert list(parts) == ["loss", "latent", "attention", "pixel", "perceptual", "adversarial", "disc", "ae"]
    assert parts["attention"].isnan() and not parts["disc"].isnan()
    parts["loss"].backward()
    d_grads = {n: p.grad.clone() for n, p in model.discriminator.named_parameters()}
    enc_grad = model.encoder.fc.weight.grad.clone()
    # the discriminator's gradient is exactly that of Eq. 6 alone
    model.zero_grad()
    target = model.to_tanh(batch["image"])
    discriminator_loss(model.discriminator(target), model.discriminator(out["recon"].detach())).backward()
    for n, p in model.discriminator.named_parameters():
        assert torch.allclose(d_grads[n], p.grad, atol=1e-6), n
    # and the autoencoder gets nothing from Eq. 6
    assert model.encoder.fc.weight.grad is None or model.encoder.fc.weight.grad.abs().sum() == 0
    assert enc_grad.abs().sum() > 0
    assert all(p.grad is None for p in model.comparator.parameters())


def test_stage2_is_latent_plus_attention_and_cam_gradients_reach_encoder(model):
    batch = _batch()
    out = model(batch["image"])
    parts = model.compute_loss(batch, out, stage="stage2")
    assert parts["pixel"].isnan()  # not computed in stage 2
    assert parts["loss"].item() == pytest.approx(0.5 * parts["latent"].item() + parts["attention"].item(), rel=1e-5)
    model.zero_grad()
    # the attention term alone reaches the encoder's convs through the CAM map (Eq. 8 is differentiable)
    from dflab.losses.lae import attention_loss

    attention_loss(out["cam"], batch["mask"], batch["label"]).backward()
    assert model.encoder.convs[0].weight.grad.abs().sum() > 0
    assert model.encoder.fc.weight.grad.abs().sum() > 0
    assert model.decoder.net[0].weight.grad is None


def test_noise_only_in_training(model):
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    a, b = model(x)["z"], model(x)["z"]
    assert torch.equal(a, b)


def test_table4_variants():
    names = ("lae_ae_rec", "lae_ae_latent", "lae_ae_latent_pixel", "lae_ae_latent_rec")
    assert all(VARIANTS.get(n)[0] == "lae" for n in names)
    m = build_detector("lae_ae_latent", input_size=64, width=0.125, latent=16)
    assert m.discriminator is None and m.comparator is None
    out = m(torch.randn(2, 3, 64, 64))
    parts = m.compute_loss({"image": torch.randn(2, 3, 64, 64), "label": torch.tensor([0, 1])}, out)
    assert parts["loss"].item() == pytest.approx(parts["latent"].item(), rel=1e-5)


def test_comparator_loads_local_weights(tmp_path):
    from safetensors.torch import save_file

    from dflab.models.detectors.lae import Comparator

    src = Comparator(width=0.125)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "vgg.safetensors"))
    dst = Comparator(width=0.125, weights=str(tmp_path / "vgg.safetensors"))
    assert dst.weights_loaded
    assert torch.equal(dst.features[0].weight, src.features[0].weight)
    save_file({"features.0.weight": src.features[0].weight.contiguous()}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(KeyError, match="lack"):
        Comparator(width=0.125, weights=str(tmp_path / "bad.safetensors"))


@pytest.mark.slow
def test_paper_recipe_builds_and_steps_at_paper_size():
    from dflab.train.recipes import load_recipe

    recipe = load_recipe("lae")
    m = build_detector(recipe.model.name, **recipe.model.kwargs).train()
    s = recipe.data.size
    assert s == 256
    out = m(torch.randn(2, 3, s, s))
    assert out["features"].shape[1:] == (512, 16, 16) and out["z"].shape == (2, 128)
    assert m.comparator_input_size == 224  # Sec. 3.1.3: C's output [512, 28, 28]
    assert m.comparator(torch.randn(1, 3, 224, 224)).shape[1:] == (512, 28, 28)  # VGG16 after the 10th conv
    parts = m.compute_loss({"image": torch.randn(2, 3, s, s), "label": torch.tensor([0, 1])}, out)
    parts["loss"].backward()
    assert m.encoder.fc.weight.grad is not None


def test_stage2_weighs_latent_over_the_batch_and_attention_over_annotated_fakes(model):
    """Eq. 12 (Algorithm 1): λ1·Σ_D L_latent + λ2·Σ_{N_active} L_attention, both per batch item: one annotated fake in
    a batch of 4 adds a quarter of its attention error; the other fakes (masks not annotated) add none."""
    from dflab.losses.lae import latent_loss

    batch = _batch()
    batch["mask_valid"] = torch.tensor([False, False, True, False])
    out = model(batch["image"])
    parts = model.compute_loss(batch, out, stage="stage2")
    err = (out["cam"][2] - batch["mask"][2]).pow(2).mean()
    assert parts["attention"].item() == pytest.approx(err.item() / 4, rel=1e-5)
    expected = model.lambda1 * latent_loss(out["z"], batch["label"]) + model.lambda2 * err / 4
    assert parts["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_perceptual_loss_compares_at_the_papers_comparator_resolution(model):
    """Sec. 3.1.3: C's output is [512, 28, 28], i.e. VGG16 sees 224 px of the 256 px crop (7/8 of the side): x and x̂
    are resized to round(7/8·S) before C (56 px for the 64 px tiny model)."""
    import torch.nn.functional as F

    from dflab.losses.lae import perceptual_loss

    batch = _batch()
    out = model(batch["image"])
    parts = model.compute_loss(batch, out, stage="stage1")

    def c(x):
        return model.comparator(F.interpolate(x, size=(56, 56), mode="bilinear", align_corners=False, antialias=True))

    expected = perceptual_loss(c(batch["image"]), c(model.from_tanh(out["recon"])))
    assert parts["perceptual"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert model.comparator_input_size == 56
    assert build_detector("lae", comparator_scale=1.0, **_TINY).comparator_input_size == 64  # opt-out: no resizing


_TINY = {"input_size": 64, "width": 0.125, "latent": 16, "comparator_width": 0.125, "disc_width": 0.125}


def test_validation_loss_is_the_stage1_autoencoder_loss(model):
    """The validation loss whose plateau ends stage 1 (Sec. 3.1.2) is Eq. 2, α1·(β1·pixel + β2·perceptual +
    β3·adversarial) + α2·latent, without the discriminator's own Eq. 6 and not the cross-entropy of [a_T, a_F]."""
    model.eval()
    batch = {k: v for k, v in _batch().items() if k != "mask"}  # the validation stream supplies image and label
    with torch.no_grad():
        out = model(batch["image"])
        val = float(model.validation_loss(batch, out))
        p = {k: float(v) for k, v in model.compute_loss(batch, out, stage="stage1").items()}
        ce = float(torch.nn.functional.cross_entropy(out["logits"], batch["label"]))
    rec = model.beta1 * p["pixel"] + model.beta2 * p["perceptual"] + model.beta3 * p["adversarial"]
    assert val == pytest.approx(model.alpha1 * rec + model.alpha2 * p["latent"], rel=1e-5)
    assert val == pytest.approx(p["loss"] - p["disc"], rel=1e-5) and abs(val - ce) > 1e-3
    assert model.validation_loss_name.startswith("lae")

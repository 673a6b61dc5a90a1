"""Active selection of fakes whose forgery masks are requested (LAE, Du et al. CIKM 2020, Sec. 2.4, Eq. 10).

1. *Channel concept ranking*: ``u_i`` = the encoder's GAP output (one average activation per last-conv channel,
   512 in Table 2); a logistic-regression model ``p(u) = σ(w·u)`` is fitted with SGD (Eq. 10; 5 epochs, lr 1e-3 in
   Sec. 3.1.5) and the 10 channels with the highest weights are kept.
2. *Active candidate selection*: the N_active fakes with the highest activation on those channels (sum of their
   ``u_i,k``) are the challenging cases; :func:`select_random` is the comparison of Fig. 5.
3. Their masks are requested from a :class:`MaskOracle` — the dataset's masks or the synthesis library's masks now
   (:class:`StreamMaskOracle`, :class:`DictMaskOracle`), a person later (:class:`CallbackMaskOracle`).

Choices (the paper leaves them open):

* Features are standardised before the linear fit (SGD on raw ReLU activations of very different scales is slow to
  converge); the channel weights are ranked in the standardised space, the selection score uses the raw activations
  as the paper describes.
* Eq. 10 is printed as a log-likelihood (no minus sign) over a model without a bias, ``p(u) = σ(w·u)``; we minimise
  the binary cross-entropy (= maximise Eq. 10) of ``σ(w·u + b)``: a bias costs nothing in the ranking of w and keeps
  w from absorbing the class prior when the scored set is unbalanced.
* Eq. 10's label is 1 for a *fake*: p(u_i) is "the possibility of image x_i to be fake" (Sec. 2.4), so the highest
  components of w are the channels most indicative of *fake* — the ones "relevant to the forgery decision". (Sec. 2.1
  defines the paper's l_i = 1 as *true*, which would invert Eq. 10's p; the text's purpose decides.)
* SGD (Sec. 3.1.5: 5 epochs, lr 1e-3) with momentum 0.9, mini-batches of 32 and zero-initialised weights — the paper
  names neither momentum nor batch size.
* "Highest activation value for these top 10 channels": the sum of a fake's 10 activations (= their mean, same
  ranking).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch


class MaskOracle(Protocol):
    """Answers mask requests: ``request(keys) -> {key: (H, W) float32 mask in [0, 1]}`` for the keys it can label."""

    def request(self, keys: Sequence[str]) -> dict[str, np.ndarray]: ...


@dataclass
class DictMaskOracle:
    """Masks known in advance (e.g. collected from ``SynthResult.mask`` or a dataset's mask files)."""

    masks: dict[str, np.ndarray]

    def request(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        return {k: np.asarray(self.masks[k], np.float32) for k in keys if k in self.masks}


@dataclass
class CallbackMaskOracle:
    """Delegates each request to a function (a labelling UI, a person): ``fn(key) -> mask or None``."""

    fn: Callable[[str], np.ndarray | None]

    def request(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out = {}
        for k in keys:
            m = self.fn(k)
            if m is not None:
                out[k] = np.asarray(m, np.float32)
        return out


@dataclass
class StreamMaskOracle:
    """Masks a training stream already knows: the dataset's mask file, or the difference to the original crop
    (``FaceStream.dataset_mask``: the true mask, not the stream's current annotation and not an augmented view).
    Keys are :func:`dflab.train.data.face_key` of the stream's rows; a selected fake with neither a mask file nor an
    original crop raises :class:`~dflab.errors.MediaError` (pass another oracle, e.g. a person's)."""

    stream: Any

    def request(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        from dflab.train.data import face_key

        index = {face_key(r): i for i, r in enumerate(self.stream.rows)}
        return {k: np.asarray(self.stream.dataset_mask(index[k]), np.float32) for k in keys if k in index}


@dataclass
class Selection:
    """Result of a selection round.

    Attributes:
        method: ``active`` or ``random``.
        indices: indices (into the scored set) of the selected fakes, best first.
        keys: their keys.
        channels: the top channels used (empty for random).
        scores: the selection score of each selected fake.
        weights: the fitted linear weights (C,) (empty for random).
    """

    method: str
    indices: list[int]
    keys: list[str]
    channels: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def fit_channel_linear(
    u: np.ndarray, labels: np.ndarray, *, epochs: int = 5, lr: float = 1e-3, batch_size: int = 32, seed: int = 0
) -> np.ndarray:
    """Eq. 10: logistic regression ``p(u) = σ(w·u + b)`` on the channel activations, SGD (momentum 0.9).

    Shape:
        u (N, C), labels (N,) 1 = fake -> w (C,) in the standardised feature space
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(u, dtype=torch.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = torch.as_tensor(labels, dtype=torch.float32)
    lin = torch.nn.Linear(x.shape[1], 1)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.SGD(lin.parameters(), lr=lr, momentum=0.9)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(lin(x[idx]).squeeze(1), y[idx])
            loss.backward()
            opt.step()
    return lin.weight.detach().squeeze(0).numpy()


def top_channels(weights: np.ndarray, k: int = 10) -> np.ndarray:
    """Indices of the k highest linear weights (the channels most indicative of *fake*), highest first."""
    return np.argsort(-np.asarray(weights), kind="stable")[:k]


def select_active(
    u: np.ndarray, labels: np.ndarray, channels: Sequence[int], n_active: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_active`` fakes with the highest total activation on ``channels``.

    Shape:
        u (N, C), labels (N,) -> (indices (n,), scores (n,)), highest first
    """
    fakes = np.flatnonzero(np.asarray(labels) == 1)
    score = np.asarray(u)[fakes][:, list(channels)].sum(1)
    order = np.argsort(-score, kind="stable")[:n_active]
    return fakes[order], score[order]


def select_random(labels: np.ndarray, n_active: int, rng: np.random.Generator) -> np.ndarray:
    """``n_active`` fakes drawn uniformly without replacement (the random baseline of Fig. 5)."""
    fakes = np.flatnonzero(np.asarray(labels) == 1)
    return rng.choice(fakes, size=min(n_active, len(fakes)), replace=False)


def choose(
    u: np.ndarray,
    labels: np.ndarray,
    keys: Sequence[str],
    n_active: int,
    *,
    method: str = "active",
    top_k: int = 10,
    seed: int = 0,
    linear_epochs: int = 5,
    linear_lr: float = 1e-3,
) -> Selection:
    """Run steps 1–2 on precomputed activations: ``method="active"`` (Sec. 2.4) or ``"random"`` (Fig. 5)."""
    if method == "random":
        idx = select_random(labels, n_active, np.random.default_rng(seed))
        return Selection("random", idx.tolist(), [keys[i] for i in idx])
    if method != "active":
        raise ValueError(f"unknown selection method {method!r}; expected 'active' or 'random'")
    w = fit_channel_linear(u, labels, epochs=linear_epochs, lr=linear_lr, seed=seed)
    ch = top_channels(w, top_k)
    idx, sc = select_active(u, labels, ch, n_active)
    return Selection("active", idx.tolist(), [keys[i] for i in idx], ch.tolist(), sc.tolist(), w.tolist())


@torch.no_grad()
def channel_activations(
    model: Any, items: Sequence[dict[str, Any]] | Any, *, batch_size: int = 16, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """GAP activations ``u`` (the detector's ``"pooled"`` output) and labels for an iterable of single items.

    Shape:
        -> u (N, C), labels (N,)
    """
    was = model.training
    model.eval()
    us, ls, buf = [], [], []

    def flush() -> None:
        x = torch.stack([b["image"] for b in buf]).to(device)
        us.append(model(x)["pooled"].float().cpu().numpy())
        ls.extend(int(b["label"]) for b in buf)
        buf.clear()

    for it in items:
        buf.append(it)
        if len(buf) == batch_size:
            flush()
    if buf:
        flush()
    model.train(was)
    return np.concatenate(us) if us else np.zeros((0, 0), np.float32), np.asarray(ls, np.int64)

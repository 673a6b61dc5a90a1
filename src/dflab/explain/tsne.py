"""t-SNE of detector embeddings coloured by label or manipulation method (MML Figs. 1, 5; LiSiam Fig. 5)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: LiSiam Fig. 5 colours: original red, DeepFakes blue, FaceSwap green, Face2Face purple, NeuralTextures orange
METHOD_COLORS = {
    "real": "#d62728",
    "Deepfakes": "#1f77b4",
    "FaceSwap": "#2ca02c",
    "Face2Face": "#9467bd",
    "NeuralTextures": "#ff7f0e",
    "FaceShifter": "#8c564b",
}


def tsne(features: np.ndarray, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE (van der Maaten & Hinton, LiSiam ref. [58]) with PCA initialisation and a fixed seed.

    The perplexity is capped at ``(N - 1) / 3`` so small test sets work.

    Shape:
        features (N, D); returns (N, 2) float32.
    """
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or len(x) < 4:
        raise ValueError(f"t-SNE needs features of shape (N>=4, D), got {x.shape}")
    perp = float(min(perplexity, max(1.0, (len(x) - 1) / 3.0)))
    emb = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(x)
    return emb.astype(np.float32)


def plot_tsne(points: np.ndarray, groups: Sequence[str], title: str = "", ax=None):
    """Scatter the 2-D points, one colour per group (method or label); returns the matplotlib figure.

    Shape:
        points (N, 2); groups N strings.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=100)
    groups = [str(g) for g in groups]
    palette = plt.get_cmap("tab10")
    for i, g in enumerate(sorted(set(groups))):
        sel = np.array([x == g for x in groups])
        ax.scatter(points[sel, 0], points[sel, 1], s=8, alpha=0.75, label=g, color=METHOD_COLORS.get(g, palette(i)))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, markerscale=1.5, loc="best")
    return fig if fig is not None else ax.figure

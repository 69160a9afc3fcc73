"""2-D / 3-D projections of embeddings: scikit-learn's t-SNE and PCA.

* ``pca``: ``sklearn.decomposition.PCA`` on the features (centred, not scaled).
* ``tsne``: ``sklearn.manifold.TSNE`` (``init="pca"``, ``learning_rate="auto"``), after a
  PCA to ``pca_dims`` (50) dimensions when the features have more (the usual speed-up);
  ``perplexity`` is clipped below ``(N - 1) / 3`` for small sets. The perplexity used,
  the seed and the PCA step are recorded in :attr:`Projection.info`.

:func:`projection_figures` writes one PNG per (method, dimension, attribute) and returns
the list with the settings (for the JSON report).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facecore.analysis.embeddings import Embeddings

__all__ = ["METHODS", "Projection", "project", "projection_figures"]

#: Projection methods.
METHODS = ("tsne", "pca")


@dataclass
class Projection:
    coords: np.ndarray  # [N, dim]
    info: dict[str, Any] = field(default_factory=dict)


def project(
    features: np.ndarray,
    *,
    method: str = "tsne",
    dim: int = 2,
    perplexity: float = 30.0,
    seed: int = 0,
    pca_dims: int = 50,
) -> Projection:
    """Project ``features`` ``[N, D]`` to ``dim`` (2 or 3) dimensions (see the module doc)."""
    from sklearn.decomposition import PCA

    X = np.asarray(features, dtype=np.float64)
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim!r}")
    n, d = X.shape
    if n <= dim:
        raise ValueError(f"need more than {dim} points to project, got {n}")
    if method == "pca":
        pca = PCA(n_components=dim, random_state=seed).fit(X)
        return Projection(pca.transform(X), {
            "method": "pca", "dim": dim, "seed": seed,
            "explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio_],
        })
    from sklearn.manifold import TSNE

    info: dict[str, Any] = {"method": "tsne", "dim": dim, "seed": seed}
    if d > pca_dims and n > pca_dims:
        X = PCA(n_components=pca_dims, random_state=seed).fit_transform(X)
        info["pca_first"] = pca_dims
    p = float(min(perplexity, max(2.0, (n - 1) / 3.0 - 1e-6)))
    info.update(perplexity=p, requested_perplexity=float(perplexity), init="pca",
                learning_rate="auto")
    tsne = TSNE(n_components=dim, perplexity=p, init="pca", learning_rate="auto",
                random_state=seed)
    coords = tsne.fit_transform(X)
    info["kl_divergence"] = float(tsne.kl_divergence_)
    return Projection(coords, info)


def projection_figures(
    emb: Embeddings,
    attributes: list[str],
    out_dir: str | Path,
    *,
    methods: tuple[str, ...] = ("tsne",),
    dims: tuple[int, ...] = (2,),
    perplexity: float = 30.0,
    seed: int = 0,
    prefix: str = "",
    title: str = "",
) -> list[dict[str, Any]]:
    """One PNG per method x dimension x attribute (each projection computed once); returns
    ``[{"file", "method", "dim", "attribute", "info"}]``."""
    from facecore.analysis.plots import scatter

    for a in attributes:
        emb.label(a)  # fail early on an unknown attribute
    out = Path(out_dir)
    written = []
    source = emb.meta.get("source", "")
    for method in methods:
        for dim in dims:
            proj = project(emb.features, method=method, dim=dim, perplexity=perplexity, seed=seed)
            setting = (
                f"perplexity {proj.info['perplexity']:g}, seed {seed}" if method == "tsne"
                else "explained variance " + ", ".join(f"{v:.2f}" for v in proj.info["explained_variance_ratio"])
            )
            for a in attributes:
                values = emb.label(a)
                names = emb.label_names.get(a) if a in emb.label_names else None
                if a == "identity" and len(np.unique(values)) > 20:
                    names = None  # too many for a legend: colour only
                path = out / f"{prefix}{method}{dim}d_{a}.png"
                scatter(
                    proj.coords, values, path, names=names,
                    title=f"{title or 'embeddings'}: {method.upper()} {dim}-D, colour = {a}",
                    note=f"{len(emb)} items, {emb.dim}-D {source}; {setting}",
                    ordinal=a.startswith("age"),
                )
                written.append({"file": str(path), "method": method, "dim": dim, "attribute": a,
                                "info": proj.info})
    return written

"""Input checks shared by the modules that take ``(embeddings [N, D], labels [N])`` with
labels in ``[0, C)``: :class:`facecore.losses.CenterLoss` and the margin-softmax heads
(:mod:`facecore.models.margin`). TorchScript-compatible (string concatenation, no
f-strings), so the scripted modules raise the same messages."""

import torch

__all__ = ["check_embeddings_and_labels"]


def check_embeddings_and_labels(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    embedding_dim: int,
    num_classes: int,
    name: str = "embeddings",
) -> None:
    """Raise ``ValueError`` naming the argument unless ``embeddings`` is ``[N, embedding_dim]``,
    ``labels`` is ``[N]`` and every label is in ``[0, num_classes - 1]``."""
    if embeddings.dim() != 2 or embeddings.shape[1] != embedding_dim:
        raise ValueError(
            name + " must have shape [N, " + str(embedding_dim) + "], got "
            + str(list(embeddings.shape))
        )
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            "labels must have shape [N] = [" + str(embeddings.shape[0]) + "], got "
            + str(list(labels.shape))
        )
    if labels.numel() > 0:
        lo = int(labels.min())
        hi = int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                "labels must be in [0, " + str(num_classes - 1) + "], got a label "
                + str(lo if lo < 0 else hi)
            )

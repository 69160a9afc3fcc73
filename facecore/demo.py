"""``make demo`` / ``python -m facecore.demo``: a short smoke run of the fused ordinal ops.

Fits a linear CORAL head on a toy ordinal problem for a few hundred steps and
prints loss, mean absolute error and the rank consistency of its predictions.
"""

from __future__ import annotations

import torch

import facecore


def main(steps: int = 300, num_classes: int = 9, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    n, d = 2048, 16
    x = torch.randn(n, d, generator=g)
    direction = torch.randn(d, generator=g)
    score = x @ direction
    # ordinal targets: quantiles of a noisy latent score
    latent = score + 0.3 * torch.randn(n, generator=g)
    cuts = torch.quantile(latent, torch.linspace(0, 1, num_classes + 1)[1:-1])
    y = torch.bucketize(latent, cuts)

    w = torch.zeros(d, requires_grad=True)
    b = torch.zeros(num_classes - 1, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for step in range(steps):
        logits = (x @ w).unsqueeze(1) + b  # CORAL: shared weight, K-1 biases
        loss = facecore.coral_loss(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:4d}  coral loss {loss.item():.4f}")
    with torch.no_grad():
        logits = (x @ w).unsqueeze(1) + b
        pred = facecore.ordinal_predict(logits, "coral")
        mae = (pred.labels - y).abs().float().mean().item()
        median_mae = (y - y.median()).abs().float().mean().item()
        inconsistent = (pred.cum_probs[:, 1:] > pred.cum_probs[:, :-1] + 1e-5).any(1).sum().item()
    print(f"MAE {mae:.3f} (median baseline {median_mae:.3f}); rank-inconsistent rows: {inconsistent}")
    return {"mae": mae, "median_mae": median_mae, "inconsistent": inconsistent}


if __name__ == "__main__":
    main()

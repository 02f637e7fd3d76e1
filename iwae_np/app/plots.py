"""Figures. Each function draws one picture onto a new matplotlib figure and returns it; the
caller shows it (notebooks) or saves it (the CLI). Axes are always labelled."""

import matplotlib.pyplot as plt
import numpy as np


def training_curves(histories):
    """histories: {label: TrainResult.history} -> test (solid), train (dashed) bound per epoch."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, history) in enumerate(histories.items()):
        epochs = [h["epoch"] for h in history]
        color = f"C{i}"
        ax.plot(epochs, [h["train_bound"] for h in history], "--", color=color, alpha=0.6)
        if history and history[0]["test_bound"] is not None:
            ax.plot(epochs, [h["test_bound"] for h in history], "-", color=color, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("bound (nats per point)")
    ax.set_title("each model's own bound: train (dashed), test (solid)")
    ax.legend()
    fig.tight_layout()
    return fig


def bound_vs_k(ks, bounds, log_px=None):
    """bounds: {label: [E[L_k] for k in ks]} on a log k axis, with log p(x) as a line if given."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in bounds.items():
        ax.plot(ks, values, "o-", label=label)
    if log_px is not None:
        ax.axhline(log_px, color="k", linestyle=":", label="log p(x)")
    ax.set_xscale("log")
    ax.set_xlabel("k (importance samples)")
    ax.set_ylabel("E[L_k] (nats per point)")
    ax.set_title("the IWAE bound tightens as k grows")
    ax.legend()
    fig.tight_layout()
    return fig


def image_grid(rows, image_shape, title=""):
    """rows: {label: (m, d) images} -> one row of m images per label."""
    labels = list(rows)
    m = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(
        len(labels), m, figsize=(m * 0.8, len(labels) * 0.9 + 0.4), squeeze=False
    )
    for r, label in enumerate(labels):
        for c in range(m):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(rows[label]):
                ax.imshow(np.reshape(rows[label][c], image_shape), cmap="gray_r", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center")
    fig.suptitle(title)
    return fig


def classic_vs_amortized(encoder_elbo, local_elbo):
    """Per-point ELBO of the encoder's q against classic VI's q*; points above the diagonal gain."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(encoder_elbo, local_elbo, s=8, alpha=0.6)
    low, high = (
        min(np.min(encoder_elbo), np.min(local_elbo)),
        max(np.max(encoder_elbo), np.max(local_elbo)),
    )
    ax.plot([low, high], [low, high], "k:", label="no gap")
    ax.set_xlabel("ELBO with the encoder's λ (amortized)")
    ax.set_ylabel("ELBO with λ* from classic VI")
    ax.set_title("amortization gap: distance above the diagonal")
    ax.legend()
    fig.tight_layout()
    return fig


def posterior_contours(z1, z2, densities, title=""):
    """densities: {label: (len(z1), len(z2)) density on the grid} -> overlaid contour plots.

    Every density is drawn at the same levels (10%, 30%, ..., 90% of the first one's peak), so
    a narrower density shows as more, tighter rings."""
    fig, ax = plt.subplots(figsize=(5, 5))
    levels = np.max(next(iter(densities.values()))) * np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    for i, (label, density) in enumerate(densities.items()):
        ax.contour(z1, z2, density.T, levels=levels, colors=f"C{i}")
        ax.plot([], [], color=f"C{i}", label=label)
    ax.set_xlabel("z₁")
    ax.set_ylabel("z₂")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig

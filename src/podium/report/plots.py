"""Plots and pictures as `data:image/png;base64,...` URIs, so the report is one file that needs no network.

matplotlib runs on its Agg backend (no display); each function builds one figure, encodes it and closes it.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from PIL import Image

FOLD_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_uri(fig, dpi: int = 96) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return png_uri(buf.getvalue())


def image_uri(arr: np.ndarray) -> str:
    """uint8 H x W x C (C = 1 or 3) as a PNG data URI."""
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return png_uri(buf.getvalue())


def overlay(arr: np.ndarray, heatmap: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """The image (uint8 H x W x C) blended with a jet-coloured heatmap (H x W, 0..1) as uint8 RGB."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr
    return show_cam_on_image(rgb.astype(np.float32) / 255.0, heatmap, use_rgb=True, image_weight=weight)


def learning_curves(curves: dict[int, pd.DataFrame], metric: str) -> str:
    """Per fold: train loss and validation log loss (left), the validation CV metric (right), per epoch."""
    plt = _plt()
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 3.6))
    for k, rows in sorted(curves.items()):
        if rows.empty:
            continue
        color = FOLD_COLORS[k % len(FOLD_COLORS)]
        if "train_loss" in rows:
            ax_loss.plot(rows["epoch"], rows["train_loss"], color=color, label=f"fold {k} train")
        if "val_logloss" in rows:
            ax_loss.plot(rows["epoch"], rows["val_logloss"], color=color, linestyle="--", label=f"fold {k} val")
        if f"val_{metric}" in rows:
            ax_metric.plot(rows["epoch"], rows[f"val_{metric}"], color=color, marker="o", markersize=3,
                           label=f"fold {k}")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="train loss (solid) / validation log loss (dashed)")
    ax_metric.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, ncol=2)
    return figure_uri(fig)


def distributions(counts: dict[str, np.ndarray], classes: list[str]) -> str:
    """Grouped bars: the share of each class in each named set (train labels, OOF and test predictions)."""
    plt = _plt()
    n = len(classes)
    fig, ax = plt.subplots(figsize=(min(max(6.0, 0.45 * n * len(counts)), 18), 3.6))
    width = 0.8 / max(len(counts), 1)
    x = np.arange(n)
    for i, (name, c) in enumerate(counts.items()):
        ax.bar(x + i * width - 0.4 + width / 2, c / max(c.sum(), 1), width, label=f"{name} (n={int(c.sum())})")
    ax.set_xticks(x, classes, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center", fontsize=8)
    ax.set(ylabel="share of images")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(counts), frameon=False)
    return figure_uri(fig)


def confusion_matrix(cm: np.ndarray, classes: list[str], normalized: bool) -> str:
    """Heatmap of counts (or row shares); numbers written in the cells while there are at most 25 classes."""
    plt = _plt()
    n = len(classes)
    side = min(max(4.5, 0.45 * n + 2), 22)
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    shown = cm.astype(np.float64)
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalized else max(shown.max(), 1))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(n)
    size = 8 if n <= 25 else 5
    ax.set_xticks(ticks, classes, rotation=45, ha="right", fontsize=size)
    ax.set_yticks(ticks, classes, fontsize=size)
    ax.set(xlabel="predicted", ylabel="true", title="row-normalized (recall on the diagonal)" if normalized
           else "counts")
    if n <= 25:
        top = shown.max() if shown.size else 1
        for t in range(n):
            for p in range(n):
                value = shown[t, p]
                text = f"{value:.2f}" if normalized else str(int(value))
                ax.text(p, t, text, ha="center", va="center", fontsize=7,
                        color="white" if value > 0.5 * (1 if normalized else top) else "black")
    return figure_uri(fig)


def reliability_diagram(table: pd.DataFrame, ece: float) -> str:
    """Accuracy vs confidence per bin (bars) against the diagonal of perfect calibration, with bin counts."""
    plt = _plt()
    fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(5.2, 5.6), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1]})
    centers = (table["lo"] + table["hi"]) / 2
    width = float(table["hi"].iloc[0] - table["lo"].iloc[0])
    used = table["count"] > 0
    ax.bar(centers[used], table["accuracy"][used], width=width * 0.95, color="#1f77b4", edgecolor="black",
           label="accuracy in bin")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.plot(table["confidence"][used], table["accuracy"][used], "o", color="#d62728", markersize=4,
            label="mean confidence")
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=f"reliability (ECE {ece:.4f})")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    ax_count.bar(centers, table["count"], width=width * 0.95, color="#7f7f7f")
    ax_count.set(xlabel="top-class probability", ylabel="images")
    ax_count.set_yscale("symlog")
    return figure_uri(fig)

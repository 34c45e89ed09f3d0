"""Predict with a podium export (model.onnx + manifest.json) using only onnxruntime, numpy, pillow and pandas.

This file never imports podium: `podium package` copies it as the package's predict.py, and `podium serve` uses its
decision code. Usage, in a package folder:

    python predict.py --images test_images/ [--csv test.csv] [--template sample_submission.csv] --out submission.csv

An image file becomes the graph's input as podium reads it (podium.data.images): PIL decodes it, EXIF orientation is
applied, transparency is composited on white, 16-bit and float images are scaled to 8 bits, the result is L or RGB;
the central manifest input.center_crop of each side is kept; it is fitted to the input size by input.resize. The
resize reproduces OpenCV's (podium's) without OpenCV: bit-exact when shrinking (INTER_AREA, measured on odd and
integer factors), within one grey level on about 1% of the pixels when enlarging (INTER_LINEAR's fixed point).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".jfif", ".ppm", ".pgm")


# ------------------------------------------------------------------------------------------------ reading images

def to_array(img: Image.Image, channels: int) -> np.ndarray:
    """A decoded (loaded) PIL image as podium reads it: uint8 H x W x channels."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a damaged EXIF block: keep the image as stored, as podium does
        pass
    mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgb = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img.convert("RGBA"))
        img = rgb.convert("RGB").convert("L") if mode == "LA" else rgb.convert("RGB")
    elif mode in ("I", "F") or mode.startswith("I;16"):
        arr = np.asarray(img)
        if mode.startswith("I;16"):
            arr = (arr.astype(np.float32) / 257.0).round()
        elif mode == "I":
            arr = arr.astype(np.float32) * (255.0 / (65535.0 if arr.max(initial=0) > 255 else 255.0))
        else:
            arr = arr * (255.0 / (1.0 if arr.max(initial=0) <= 1.0 else 255.0))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    elif mode == "1":
        img = img.convert("L")
    elif mode == "P":
        pal = img.convert("RGB")
        a = np.asarray(pal)
        img = pal.convert("L") if (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all() else pal
    elif mode not in ("L", "RGB"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    img = img.convert("L" if channels == 1 else "RGB") if img.mode != ("L" if channels == 1 else "RGB") else img
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def read_image(path: str | Path, channels: int) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        return to_array(img, channels)


def crop_center(arr: np.ndarray, fraction: float) -> np.ndarray:
    if fraction >= 1:
        return arr
    h, w = arr.shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return arr[top:top + ch, left:left + cw]


def _area_weights(src: int, dst: int) -> np.ndarray:
    """OpenCV's INTER_AREA weights (dst x src): each output pixel averages the source span it covers."""
    scale, w = src / dst, np.zeros((dst, src))
    for d in range(dst):
        f1 = d * scale
        f2 = f1 + scale
        s2 = min(int(np.floor(f2)), src)
        s1 = min(int(np.ceil(f1)), s2)
        cell = min(scale, src - f1)
        if s1 - f1 > 1e-3:
            w[d, s1 - 1] = (s1 - f1) / cell
        w[d, s1:s2] = 1.0 / cell
        if f2 - s2 > 1e-3 and s2 < src:
            w[d, s2] = min(f2 - s2, 1.0, cell) / cell
    return w


def _area(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if h % height == 0 and w % width == 0:  # OpenCV's fast path: integer sums, rounded half up
        ky, kx = h // height, w // width
        s = arr.astype(np.int64).reshape(height, ky, width, kx, -1).sum((1, 3))
        return ((2 * s + ky * kx) // (2 * ky * kx)).astype(np.uint8)
    rows = np.einsum("jkc,lk->jlc", arr.astype(np.float32), _area_weights(w, width).astype(np.float32))
    out = np.einsum("ij,jlc->ilc", _area_weights(h, height).astype(np.float32), rows)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's INTER_LINEAR source index and 11-bit fixed-point weights per output pixel (float32 as it does)."""
    scale = src / dst
    index, weights = np.empty(dst, np.int64), np.empty((dst, 2), np.int64)
    for d in range(dst):
        fx = np.float32((d + 0.5) * scale - 0.5)
        s = int(np.floor(fx))
        fx = np.float32(fx - np.float32(s))
        if s < 0:
            fx, s = np.float32(0), 0
        if s >= src - 1:
            fx, s = np.float32(0), src - 1
        index[d] = s
        weights[d] = [int(np.rint(np.float32((np.float32(1) - fx) * 2048))), int(np.rint(np.float32(fx * 2048)))]
    return index, weights


def _linear(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = arr.shape[:2]
    x = arr.astype(np.int64)
    sx, ax = _linear_taps(w, width)
    sy, ay = _linear_taps(h, height)
    rows = x[:, sx] * ax[None, :, 0, None] + x[:, np.minimum(sx + 1, w - 1)] * ax[None, :, 1, None]
    d0, d1 = rows[sy], rows[np.minimum(sy + 1, h - 1)]
    out = (((ay[:, 0, None, None] * (d0 >> 4)) >> 16) + ((ay[:, 1, None, None] * (d1 >> 4)) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """As podium's (OpenCV): INTER_AREA when either side shrinks, else INTER_LINEAR."""
    if arr.shape[1] == width and arr.shape[0] == height:
        return arr
    shrink = width < arr.shape[1] or height < arr.shape[0]
    return _area(arr, width, height) if shrink else _linear(arr, width, height)


def fit_image(arr: np.ndarray, size: int, policy: str) -> np.ndarray:
    """'resize' stretches to size x size, 'pad' letterboxes with black bars, 'keep' requires size x size."""
    h, w = arr.shape[:2]
    if policy == "keep":
        if (h, w) != (size, size):
            raise ValueError(f"is {w}x{h}, but the model takes {size}x{size} images as they are (resize=keep)")
        return arr
    if policy == "resize":
        return resize(arr, size, size)
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.zeros((size, size, arr.shape[2]), np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = resize(arr, nw, nh)
    return out


def prepare(arr: np.ndarray, manifest: dict) -> np.ndarray:
    """A decoded image (H x W x C uint8) as the graph takes it: centre crop, then fitted to the input size."""
    spec = manifest["input"]
    return fit_image(crop_center(arr, spec["center_crop"]), spec["size"], spec["resize"])


# ---------------------------------------------------------------------------------------------- the model

class Model:
    """model.onnx + manifest.json from an export (or package) folder; probabilities for prepared images."""

    def __init__(self, folder: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "manifest.json").read_text())
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.folder / self.manifest["model"]), options,
                                            providers=ort.get_available_providers())
        self.outputs: list[str] = self.manifest["output"]["columns"]

    def probs(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """N x outputs float64 for uint8 N x H x W x C at the input size."""
        name = self.manifest["input"]["name"]
        parts = [self.session.run(None, {name: np.ascontiguousarray(images[i:i + batch_size])})[0]
                 for i in range(0, len(images), batch_size)]
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, len(self.outputs)))


# ------------------------------------------------------------------------------------------- the decision

def decide(probs: np.ndarray, manifest: dict, top_k: int = 5) -> list[dict]:
    """Per row, the task's answer as JSON: top-k classes; multi-label: the labels over their thresholds;
    multi-task: each task's class (and the combined class when the run names data.combine)."""
    task, outputs = manifest["task"], manifest["output"]["columns"]
    rows = []
    for p in probs:
        order = np.argsort(-p, kind="stable")[:top_k]
        row: dict = {"top": [{"class": outputs[j], "prob": round(float(p[j]), 6)} for j in order]}
        if task["kind"] == "multiclass":
            row["label"] = outputs[int(order[0])]
        elif task["kind"] == "multilabel":
            row["labels"] = [c for c, q in zip(outputs, p) if q >= task["thresholds"][c]]
        else:
            row["tasks"] = _task_classes(p[None, :], task)[0]
            if task.get("combine_table"):
                row["label"] = _combined([row["tasks"]], task)[0]
        rows.append(row)
    return rows


def _task_classes(probs: np.ndarray, task: dict) -> list[dict]:
    out, start = [{} for _ in range(len(probs))], 0
    for t in task["tasks"]:
        classes = task["classes"][t]
        best = probs[:, start:start + len(classes)].argmax(1)
        for row, j in zip(out, best):
            row[t] = classes[int(j)]
        start += len(classes)
    return out


def _combined(rows: list[dict], task: dict) -> list[str]:
    table = {tuple(entry[:-1]): entry[-1] for entry in task["combine_table"]}
    return [table[tuple(row[t] for t in task["tasks"])] for row in rows]


def submission(ids: list[str], probs: np.ndarray, manifest: dict) -> "pd.DataFrame":  # noqa: F821
    """The template's layout (manifest submission): the id column, then a label column, one column per class
    (probabilities) or label (0/1), or one per task, as podium predict fills them."""
    import pandas as pd

    task, outputs = manifest["task"], manifest["output"]["columns"]
    layout = manifest["submission"]
    columns, kind = layout["columns"], task["kind"]
    sub = pd.DataFrame({layout["id_col"]: ids})
    if kind == "multitask":
        rows = _task_classes(probs, task)
        if set(columns) == set(task["tasks"]):
            for t in columns:
                sub[t] = [row[t] for row in rows]
        else:
            sub[columns[0]] = _combined(rows, task)
    elif kind == "multilabel":
        hot = probs >= np.array([task["thresholds"][c] for c in outputs])[None, :]
        if set(columns) == set(outputs):
            for c in columns:
                sub[c] = hot[:, outputs.index(c)].astype(int)
        else:
            sub[columns[0]] = [task["label_sep"].join(np.asarray(outputs, dtype=object)[h]) for h in hot]
    elif set(columns) == set(outputs):
        for c in columns:
            sub[c] = probs[:, outputs.index(c)]
    else:
        sub[columns[0]] = np.asarray(outputs, dtype=object)[probs.argmax(1)]
    return sub


# ----------------------------------------------------------------------------------------------- the script

def list_images(folder: Path, csv: Path | None, id_col: str, path_col: str | None = None) -> tuple[list, list]:
    """(ids, files): the CSV's ids with <id>.<ext> (or its `path_col` column) under `folder`; without a CSV every image
    under `folder`, its id the relative path without extension (as podium's data.test_dir)."""
    if csv is None:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        return [p.relative_to(folder).with_suffix("").as_posix() for p in files], files
    import pandas as pd

    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    by_stem = {p.relative_to(folder).with_suffix("").as_posix(): p for p in folder.rglob("*")
               if p.suffix.lower() in IMAGE_EXTENSIONS}
    files = []
    for ident, path in zip(table[id_col], table[path_col] if path_col else table[id_col]):
        found = folder / path if path_col else by_stem.get(ident)
        if found is None or not found.is_file():
            raise SystemExit(f"error: no image for id '{ident}' under {folder}")
        files.append(found)
    return list(table[id_col]), files


def main(argv: list[str] | None = None) -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description="Predict a folder of images into submission.csv with model.onnx.")
    ap.add_argument("--images", type=Path, required=True, help="folder of test images")
    ap.add_argument("--csv", type=Path, help="test CSV listing the ids (default: every image in --images)")
    ap.add_argument("--template", type=Path, help="sample_submission.csv: rows are written in its id order")
    ap.add_argument("--out", type=Path, default=Path("submission.csv"))
    ap.add_argument("--probs", type=Path, help="also write every probability here (CSV)")
    ap.add_argument("--model", type=Path, default=here, help="folder of model.onnx + manifest.json")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)
    model = Model(args.model, threads=int(os.environ.get("OMP_NUM_THREADS", "0")) or None)
    manifest = model.manifest
    ids, files = list_images(args.images, args.csv, manifest["submission"]["id_col"], manifest["input"]["path_col"])
    channels = manifest["input"]["channels"]
    images = np.stack([prepare(read_image(f, channels), manifest) for f in files])
    probs = model.probs(images, args.batch_size)
    sub = submission(ids, probs, manifest)
    if args.template is not None:
        import pandas as pd

        id_col = manifest["submission"]["id_col"]
        order = pd.read_csv(args.template, dtype=str, keep_default_na=False)[id_col]
        sub = sub.set_index(id_col).loc[order].reset_index()
    sub.to_csv(args.out, index=False)
    if args.probs is not None:
        table = pd_frame(ids, probs, model.outputs)
        table.to_csv(args.probs, index=False)
    print(f"wrote {args.out} ({len(sub)} rows)")


def pd_frame(ids: list[str], probs: np.ndarray, outputs: list[str]):
    import pandas as pd

    table = pd.DataFrame(probs, columns=outputs)
    table.insert(0, "id", ids)
    return table


if __name__ == "__main__":
    main()

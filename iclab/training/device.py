"""Device and precision of a run: which device a config asks for, the device to load a saved run onto,
the autocast dtype of the step and its autocast context, CPU threads, and the compile backend. Used by the
trainer, by runs and by every analysis that loads a run (they import this module, never the trainer)."""

from __future__ import annotations

import warnings

import torch

from iclab.errors import IclabError

# torch.compile backend of the step ("inductor"; tests use "aot_eager", which traces the same graphs
# without generating code)
COMPILE_BACKEND = "inductor"


class TrainingError(IclabError, RuntimeError):
    """A run that cannot start or go on (device, precision, divergence, resume); the message says why."""


class ResumeWarning(UserWarning):
    """Resume had to fall back (a damaged checkpoint, or none at all); the message says what it did."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise TrainingError(f"training.device={name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(f"training.device={name!r} but CUDA is not available (use training.device=cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise TrainingError(f"training.device={name!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise TrainingError(f"training.device={name!r} but MPS is not available (use training.device=cpu or auto)")
    elif dev.type != "cpu":
        raise TrainingError(f"training.device={name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return dev


def run_device(name: str) -> torch.device:
    """The device to load a saved run onto (evaluation, sampling, analyses): its training device when this
    machine has it, else the CPU, with a warning (a run trained on CUDA is still evaluated on a laptop)."""
    try:
        return resolve_device(name)
    except TrainingError as e:
        warnings.warn(f"{e}; loading the run on the CPU instead", ResumeWarning, stacklevel=2)
        return torch.device("cpu")


def cpu_bf16_supported() -> bool:
    """oneDNN runs bfloat16 matmuls natively on this CPU (AVX512-BF16 or AMX): there, CPU autocast to bf16
    runs the matmuls several times faster than fp32 (benchmarks/README.md); elsewhere it would emulate."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_amp_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """training.dtype -> the autocast dtype of the step (None: plain fp32). auto: bf16 on CUDA devices that
    support it, fp32 elsewhere (also on the CPU, whose bf16 is opt-in: training.dtype=bfloat16);
    bfloat16_where_native: bf16 on such a CUDA device or a CPU with native bf16 matmuls, fp32 elsewhere."""
    if name == "float32":
        return None
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if name == "auto":
        return torch.bfloat16 if cuda_bf16 else None
    if name == "bfloat16_where_native":
        return torch.bfloat16 if cuda_bf16 or (device.type == "cpu" and cpu_bf16_supported()) else None
    if device.type == "cpu":
        if not cpu_bf16_supported():
            raise TrainingError(
                "training.dtype=bfloat16 (autocast) needs CUDA or a CPU with native bfloat16 matmuls (AVX512-BF16 "
                "or AMX, through oneDNN); this CPU has none: set training.dtype=float32 (or auto)"
            )
        return torch.bfloat16
    if device.type != "cuda":
        raise TrainingError(
            f"training.dtype=bfloat16 (autocast) is supported on CUDA and on CPUs with native bfloat16 only; on "
            f"{device.type} the step runs in float32: set training.dtype=float32 (or auto)"
        )
    if not cuda_bf16:
        raise TrainingError(
            "training.dtype=bfloat16 but this CUDA device does not support bfloat16; set training.dtype=float32"
        )
    return torch.bfloat16


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """The autocast context of the step: `amp_dtype` (from `resolve_amp_dtype`), or plain fp32 when None."""
    return torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)


def set_threads(threads: int | None) -> None:
    """training.threads: torch's CPU threads in this process (None: torch's default)."""
    if threads is not None:
        torch.set_num_threads(threads)

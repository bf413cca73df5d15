"""Runtime settings of a loaded TorchScript model on the CPU (shared by the engine and benchmarks).

``torch.jit.freeze`` inlines the weights as constants and ``torch.jit.optimize_for_inference``
folds batch norms into convolutions and picks oneDNN kernels; bfloat16 autocast runs the
convolutions in bfloat16 on CPUs with AVX-512 BF16 (float32 accumulation). Measured on the salt
U-Net in ``bench/salt_speed.py``.
"""
from __future__ import annotations

import logging
import warnings

import torch

log = logging.getLogger(__name__)


def optimise_for_cpu(module: torch.jit.ScriptModule, name: str = "model") -> torch.jit.ScriptModule:
    """A frozen, inference-optimised copy of a TorchScript module.

    Args:
        module: a ``torch.jit`` module (traced or scripted), any input shapes.
        name: what to call it in the log (the task).
    Returns:
        The frozen module passed through ``torch.jit.optimize_for_inference`` (same inputs and
        outputs). When that pass fails (in torch 2.14 it fails on a graph where a Linear + BatchNorm1d
        neck follows generalised-mean pooling: "INTERNAL ASSERT FAILED ... expected double"; the
        whale embedding), a new frozen copy without it, said once at INFO level; when freezing
        itself fails, or for an ``nn.Module`` that is not TorchScript, the module as it is.
    """
    if not isinstance(module, torch.jit.ScriptModule):
        return module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            frozen = torch.jit.freeze(module.eval())
        except (RuntimeError, AttributeError) as exc:
            log.warning("%s: could not freeze the TorchScript module (%s); serving it as loaded", name, exc)
            return module
        try:
            return torch.jit.optimize_for_inference(frozen)
        except (RuntimeError, AttributeError) as exc:
            log.info("%s: frozen; torch.jit.optimize_for_inference does not apply to this graph (%s); "
                     "serving the frozen module", name, str(exc).split(",")[0])
            # the failed pass leaves its copy half converted to MKLDNN (it then fails at run time): freeze anew
            return torch.jit.freeze(module.eval())


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bfloat16 arithmetic (AVX-512 BF16 or AMX), per PyTorch's probe."""
    probe = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    if probe in ("AVX512_BF16", "AMX") or "BF16" in str(probe).upper():
        return True
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def runtime_settings(meta: dict, device: torch.device, cpu_bf16: str = "auto", cpu_freeze: bool = True,
                     cuda_amp: torch.dtype | None = None) -> dict:
    """The forward-pass settings of one checkpoint on ``device``: ``amp_dtype`` (autocast dtype or
    None), ``channels_last`` (4-D inputs in channels-last memory format), ``frozen`` (serve
    :func:`optimise_for_cpu`'s copy).

    CUDA: ``cuda_amp`` autocast. CPU: bfloat16 autocast with channels-last inputs when ``cpu_bf16``
    is ``on``, or ``auto`` and ``meta["runtime"]["cpu_bf16"]`` says the checkpoint's metric was
    checked in bfloat16 and the CPU has native bfloat16; otherwise float32, frozen unless
    ``cpu_freeze`` is False (``bench/salt_speed.py`` measures each setting).
    """
    if device.type != "cpu":
        return {"amp_dtype": cuda_amp, "channels_last": False, "frozen": False}
    validated = bool(meta.get("runtime", {}).get("cpu_bf16"))
    bf16 = cpu_bf16 == "on" or (cpu_bf16 == "auto" and validated and cpu_supports_bf16())
    if bf16:
        return {"amp_dtype": torch.bfloat16, "channels_last": len(meta["input_shape"]) == 3, "frozen": False}
    return {"amp_dtype": None, "channels_last": False, "frozen": cpu_freeze}

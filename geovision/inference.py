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


def optimise_for_cpu(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """A frozen, inference-optimised copy of a TorchScript module (the module itself when that fails).

    Args:
        module: a ``torch.jit`` module (traced or scripted), any input shapes.
    Returns:
        The optimised module (same inputs and outputs); on a module that cannot be frozen (an
        ``nn.Module`` that is not TorchScript, or an unsupported graph) the input, with a warning.
    """
    if not isinstance(module, torch.jit.ScriptModule):
        return module
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frozen = torch.jit.freeze(module.eval())
            return torch.jit.optimize_for_inference(frozen)
    except (RuntimeError, AttributeError) as exc:  # an unsupported graph: keep the module as it is
        log.warning("could not freeze the module (%s); serving it unoptimised", exc)
        return module


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

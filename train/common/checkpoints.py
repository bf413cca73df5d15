"""Resumable run checkpoints (``RUN_DIR/last.pt``): a dict of state dicts, as in pytorch/examples and timm."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def save_run(path: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
             sched: torch.optim.lr_scheduler.LRScheduler, epoch: int, best: dict, minutes: float) -> None:
    """Write ``{name: state_dict for modules, "optimizer", "scheduler", "epoch" (0-based, finished),
    "best", "minutes"}`` to ``path``."""
    torch.save({**{name: m.state_dict() for name, m in modules.items()}, "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "epoch": epoch, "best": best, "minutes": minutes}, path)


def resume_run(path: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
               sched: torch.optim.lr_scheduler.LRScheduler, device: torch.device | str = "cpu",
               ) -> tuple[int, dict, float] | None:
    """Load a :func:`save_run` checkpoint into ``modules``, ``opt`` and ``sched``.

    Returns ``(first epoch to run, best so far, minutes already spent)``, or None when ``path``
    does not exist.
    """
    if not Path(path).exists():
        return None
    state = torch.load(path, map_location=device)
    for name, module in modules.items():
        module.load_state_dict(state[name])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    log.info("resumed %s at epoch %d (best %s)", path, state["epoch"] + 1, state["best"])
    return state["epoch"] + 1, state["best"], state.get("minutes", 0.0)


def optimiser_step(loss: torch.Tensor, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
                   ema: torch.optim.swa_utils.AveragedModel | None = None, model: torch.nn.Module | None = None) -> float:
    """Backward pass, optimiser and schedule step, EMA update of ``model`` when given; returns the loss."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    if ema is not None:
        ema.update_parameters(model)
    return loss.item()

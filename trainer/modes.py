"""Precision and modes: the one way out of autocast, out of wrappers and into eval mode.

- ``unwrap(m)``: the bare module inside DDP / DataParallel / torch.compile wrappers.
- ``bare_forward(m)``: the class ``forward`` of ``unwrap(m)``, bound to it. Accelerate
  wraps a prepared model's ``forward`` in autocast (an instance attribute); the class
  forward skips that, so the caller decides the precision.
- ``full_precision(device_type)``: autocast off inside; ``fp32(m)``: ``bare_forward(m)``
  called inside it. Every penalty (gradient penalty, R1) goes through these, so its
  double backward runs in fp32 whatever the run's mixed precision. Valid under DDP
  because the loop all-reduces gradients itself (no reducer hooks are needed).
- ``frozen(m)``: m's weights get no gradient while a graph is built through it.
- ``eval_mode(G)``: G in eval mode inside, its train/eval mode restored after, and a
  function that puts inputs on G's device and dtype (sampling, grids, translation).
- ``to_uint8``: [-1, 1] float images -> uint8, as a saved PNG holds them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

Placer = Callable[[torch.Tensor | None], torch.Tensor | None]


def unwrap(module: nn.Module) -> nn.Module:
    """The innermost module: skips DDP, DataParallel and torch.compile wrappers."""
    m = module
    while True:
        if isinstance(m, nn.parallel.DistributedDataParallel | nn.DataParallel):
            m = m.module
        elif isinstance(getattr(m, "_orig_mod", None), nn.Module):
            m = m._orig_mod
        else:
            return m


def bare_forward(module: nn.Module) -> Callable:
    """The class ``forward`` of ``unwrap(module)``, bound to it (no instance-level patch).

    Accelerate's mixed precision patches ``forward`` on the instance with an autocast
    wrapper; this skips it and every wrapper, so the caller decides the precision.
    """
    m = unwrap(module)
    return type(m).forward.__get__(m)


@contextlib.contextmanager
def full_precision(device_type: str) -> Iterator[None]:
    """Autocast disabled inside (fp32 arithmetic for penalties and their double backward)."""
    with torch.autocast(device_type=device_type, enabled=False):
        yield


def fp32(module: nn.Module) -> Callable:
    """``module`` called with autocast off and without wrappers, e.g. as a penalty's critic."""
    forward = bare_forward(module)
    device_type = next(unwrap(module).parameters()).device.type

    def call(*args, **kwargs):
        with full_precision(device_type):
            return forward(*args, **kwargs)

    return call


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` stop requiring grad while the graph is built inside.

    Gradients still flow through the module to its inputs; its weights get none
    (and their backward is skipped) even though the flag is restored on exit.
    """
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


@contextlib.contextmanager
def eval_mode(G: nn.Module) -> Iterator[Placer]:
    """G in eval mode inside; yields ``put(x)``: x on G's device and dtype (None stays None).

    G's train/eval mode is restored on exit, also after an error, so sampling during
    training leaves BatchNorm and dropout as the loop needs them.
    """
    ref = next(G.parameters())

    def put(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        return x.to(ref.device, ref.dtype)

    was_training = G.training
    G.eval()
    try:
        yield put
    finally:
        G.train(was_training)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images [N, 3, H, W] -> uint8 on CPU (rounded, as a saved PNG)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()

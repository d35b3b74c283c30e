"""``mixed_precision=auto``: which precision a run uses on this machine, and why.

The decision is a pure function of the facts (``decide``), so a test covers the whole
table; ``machine_facts`` gathers them here. In order:

1. An explicit config value (``no`` | ``fp16`` | ``bf16``) is used as given.
2. The launcher's value: ``accelerate launch --mixed_precision X`` (or its config file)
   passes X to the processes as ACCELERATE_MIXED_PRECISION. Its default is ``no``, and
   the processes cannot tell a default from a flag, so under ``accelerate launch`` pass
   ``--mixed_precision $(python -m trainer.precision)`` to get this module's choice
   (slurm/train.sh does, for MIXED_PRECISION=auto).
3. CUDA: bf16 where the device computes it natively (compute capability 8.0 and newer),
   else fp16, which Accelerate runs with a GradScaler (loss scaling).
4. CPU: bf16 where the CPU has native bf16 instructions (the ``avx512_bf16`` or
   ``amx_bf16`` flag); without them PyTorch emulates bf16 and it runs about 10x slower
   than fp32, so fp32 (``no``). torch's ``get_cpu_capability()`` (AVX2, AVX512, ...) is
   reported but does not decide: AVX-512 CPUs without avx512_bf16 exist.
5. Any other device: fp32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CHOICES = ("no", "fp16", "bf16")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags of native bf16 arithmetic


@dataclass(frozen=True)
class Facts:
    """What the decision depends on."""

    device_type: str  # "cuda" | "cpu" | ...: where the processes will train
    cuda_bf16: bool = False  # the CUDA device computes bf16 natively
    cuda_name: str = ""  # e.g. "NVIDIA H200" (for the reason only)
    cpu_capability: str = ""  # torch.backends.cpu.get_cpu_capability(), e.g. "AVX512"
    cpu_flags: frozenset[str] = field(default_factory=frozenset)  # from /proc/cpuinfo
    launcher: str = ""  # ACCELERATE_MIXED_PRECISION ("" when unset)


def decide(explicit: str, facts: Facts) -> tuple[str, str]:
    """(precision, reason) for a config value ``explicit`` (``auto`` or a precision)."""
    if explicit in CHOICES:
        return explicit, f"mixed_precision={explicit} in the config"
    launcher = facts.launcher.lower()
    if launcher in CHOICES:
        return launcher, (f"the launcher's --mixed_precision {launcher} "
                          f"(ACCELERATE_MIXED_PRECISION)")
    if facts.device_type == "cuda":
        name = facts.cuda_name or "the CUDA device"
        if facts.cuda_bf16:
            return "bf16", f"auto: {name} computes bf16 natively"
        return "fp16", f"auto: {name} has no native bf16; fp16 with loss scaling"
    if facts.device_type == "cpu":
        cap = f"torch CPU capability {facts.cpu_capability}; " if facts.cpu_capability else ""
        native = [f for f in BF16_FLAGS if f in facts.cpu_flags]
        if native:
            return "bf16", f"auto: this CPU has native bf16 ({cap}CPU flag {native[0]})"
        if not facts.cpu_flags:
            return "no", f"auto: fp32, the CPU flags are unknown here ({cap}bf16 may be emulated)"
        return "no", (f"auto: fp32, this CPU has no native bf16 ({cap}no avx512_bf16 / "
                      f"amx_bf16 flag; emulated bf16 runs ~10x slower)")
    return "no", f"auto: fp32 on {facts.device_type} (auto decides for CUDA and CPUs only)"


def _cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags":
                return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def machine_facts() -> Facts:
    """The facts of this process: the device Accelerate will pick, its bf16 support."""
    import torch

    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "")
    capability = ""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        pass
    if torch.cuda.is_available() and not _truthy("ACCELERATE_USE_CPU"):
        try:  # emulated bf16 (the default of is_bf16_supported) is not what we want
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch: no emulation argument
            bf16 = torch.cuda.is_bf16_supported()
        return Facts("cuda", cuda_bf16=bf16, cuda_name=torch.cuda.get_device_name(),
                     cpu_capability=capability, launcher=launcher)
    return Facts("cpu", cpu_capability=capability, cpu_flags=_cpu_flags(), launcher=launcher)


def resolve_precision(explicit: str) -> tuple[str, str]:
    """``decide`` on this machine's facts."""
    return decide(explicit, machine_facts())


def load_state_any_precision(accelerator, checkpoint: str | Path) -> str:
    """``accelerator.load_state``, also when the precision changed since the checkpoint.

    An fp16 run on a GPU has a loss scaler, and Accelerate then expects its state in the
    checkpoint; one written in bf16 or fp32 (e.g. auto on another machine) has none, and
    loading would fail. The scaler then starts afresh. Returns a note saying so, or "".
    """
    scaler = getattr(accelerator, "scaler", None)
    if scaler is None or (Path(checkpoint) / "scaler.pt").is_file():
        accelerator.load_state(str(checkpoint))
        return ""
    accelerator.scaler = None  # the optimizers keep their reference to it
    try:
        accelerator.load_state(str(checkpoint))
    finally:
        accelerator.scaler = scaler
    return (f"note: {checkpoint} holds no loss-scaler state (written without fp16); "
            f"the fp16 loss scale starts afresh")


def main(argv: list[str] | None = None) -> int:
    """``python -m trainer.precision [VALUE]``: the precision on stdout, why on stderr."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m trainer.precision",
                                description="Print what mixed_precision=auto (or VALUE) "
                                            "becomes on this machine; the reason on stderr.")
    p.add_argument("value", nargs="?", default="auto", choices=("auto", *CHOICES))
    args = p.parse_args(argv)
    precision, why = resolve_precision(args.value)
    print(precision)
    print(why, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training images/s: this project's step against a loop written as pytorch/examples
dcgan/main.py, for the DCGAN and the cGAN presets, and what each speed lever is worth.

    python -m benchmarks.train_throughput                    # batch 64, 64 px, 3 repeats
    python -m benchmarks.train_throughput --levers channels_last,cache+fused --repeats 5
    python -m benchmarks.train_throughput --tiny --json out.json   # seconds; CI
    python -m benchmarks.train_throughput --device cuda --batch 512 --levers bf16,compile+bf16

Loops (both include data loading; the clock runs from the top of one iteration to the next):
  reference  main.py's loop: fp32, NCHW, DataLoader(shuffle, --ref-workers) decoding every
             PNG with PIL + torchvision transforms, Adam as constructed by default, one G
             forward shared by the D and the G update, D's loss in separate backward calls,
             `.item()` of the losses and D outputs every step. DCGAN: main.py's netG / netD at
             the preset's widths (the project's DCGAN, so FLOPs match). cGAN: the project's
             G and D for the preset, its conditioning and loss, driven the same naive way
             (a separate D pass for the wrong tags; D's weight gradients in the G update).
  project    `python -m trainer.train --config PRESET` itself (trainer.train.main, the real
             Trainer with its uint8 cache, phases, EMA), fp32 (mixed_precision=no) with the
             preset's channels_last; timed from inside its loop (benchmarks.common).
Levers (--levers, comma-separated; join with + to combine): each adds a "reference + lever"
variant, and a project variant where the project has a switch for it:
  channels_last  NHWC models and input     project: the config key (preset value toggled)
  bf16           autocast bfloat16          project: mixed_precision=bf16
  cache          the project's uint8 cache and batch loader instead of PIL (project: always)
  foreach        Adam(foreach=True)         (project: fused)
  fused          Adam(fused=True)           (project: always, where torch has it)
  nosync         no `.item()` per step      (project: one host sync per log interval)
  compile        torch.compile on G and D   project: Accelerate's dynamo backend "inductor"
Variants run interleaved (repeat 1 of every variant, then repeat 2, ...); each figure is the
median of --repeats. FLOPs per step: torch.utils.flop_counter over one warm-up step; peak:
the best torch.mm of 2048^3 (CPU) or 8192^3 (CUDA) in fp32 and in bf16 on the device.
--device cuda runs both loops on the GPU (the reference moves each batch there as main.py
does; the project's device is Accelerate's); the clock synchronises with the GPU at the
first and the last timed step. "fp32" on a GPU lets convolutions use TF32 (torch's default,
recorded in the machine line).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import (
    StepClock,
    TrainTiming,
    env_vars,
    finish_machine,
    fmt,
    machine_info,
    machine_line,
    matmul_peak_gflops,
    md_table,
    median,
    require_at_least_one,
    time_training,
    tiny_avatars,
    write_json,
)

LEVERS = ("channels_last", "bf16", "cache", "foreach", "fused", "nosync", "compile")
PROJECT_SWITCHES = {"channels_last", "bf16", "compile"}  # levers the project can toggle
DEFAULT_LEVERS = ",".join(LEVERS)
WIN = 1.05  # a lever "wins" when its median beats its baseline's by more than 5 %
GOAL_VS_REFERENCE = 2.5  # DCGAN: project img/s / reference img/s
GOAL_CGAN_VS_DCGAN = 0.85  # cGAN project img/s / DCGAN project img/s
TINY_OVERRIDES = ["model.g_ch=8", "model.d_ch=8", "model.d_hidden=32"]
CPU = torch.device("cpu")


# -- the reference: pytorch/examples dcgan/main.py ----------------------------------------
class RefGenerator(nn.Module):
    """main.py ``Generator``: z [B, nz, 1, 1] -> image [B, 3, 64, 64]."""

    def __init__(self, nz: int, ngf: int, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),  # (ngf*8) x 4 x 4
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),  # (ngf*4) x 8 x 8
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # (ngf*2) x 16 x 16
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),  # ngf x 32 x 32
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),  # nc x 64 x 64
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class RefDiscriminator(nn.Module):
    """main.py ``Discriminator``: image [B, 3, 64, 64] -> probability [B]."""

    def __init__(self, ndf: int, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),  # ndf x 32 x 32
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),  # (ndf*2) x 16 x 16
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),  # (ndf*4) x 8 x 8
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),  # (ndf*8) x 4 x 4
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1, 1).squeeze(1)


def weights_init(m: nn.Module) -> None:
    """main.py ``weights_init``."""
    name = m.__class__.__name__
    if name.find("Conv") != -1:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif name.find("BatchNorm") != -1:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def reference_batches(cfg: Any, levers: frozenset[str], workers: int,
                      device: torch.device = CPU) -> Iterator[tuple]:
    """(image float [B, 3, S, S] in [-1, 1], labels [B, K]) on ``device``, forever.

    main.py's pipeline (a new DataLoader iterator, and new workers, every epoch; each batch
    then moved to the device), or with the ``cache`` lever the project's: uint8 cache,
    whole-batch fetch, the uint8 batch moved to the device and flipped there.
    """
    from torch.utils.data import DataLoader

    from benchmarks.data_pipeline import PILImages
    from trainer.data import load_configured_dataset, to_model_input
    from trainer.data.batches import BatchView, StepBatches

    if "cache" in levers:
        ds = load_configured_dataset(cfg.data)
        loader = DataLoader(BatchView(ds), batch_sampler=StepBatches(len(ds), cfg.batch_size,
                                                                     cfg.seed),
                            collate_fn=lambda x: x)
        for images, labels in loader:  # StepBatches never ends
            yield to_model_input(images.to(device), flip=True), labels.to(device)
        return
    pil = PILImages(Path(cfg.data.path), cfg.data.size)
    loader = DataLoader(pil, batch_size=cfg.batch_size, shuffle=True, num_workers=workers,
                        drop_last=True)
    while True:
        for images, labels in loader:
            yield images.to(device), labels.to(device)


def reference_step(cfg: Any, levers: frozenset[str], group_sizes: list[int],
                   device: torch.device = CPU
                   ) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One main.py iteration on ``device``, as a function of (real images, labels)."""
    from trainer.losses import ADVERSARIAL, wrong_tags
    from trainer.models import build_discriminator, build_generator

    mc, nz = cfg.model, cfg.model.z_dim
    conditional = mc.cond != "none"
    if conditional:  # the project's networks for the preset, fp32
        netG, netD = build_generator(cfg, sum(group_sizes)), build_discriminator(cfg, group_sizes)
    else:
        if cfg.data.size != 64 or mc.arch != "dcgan":
            raise SystemExit("the reference DCGAN is main.py's 64 px network: use data.size=64 "
                             "and model.arch=dcgan")
        netG, netD = RefGenerator(nz, mc.g_ch), RefDiscriminator(mc.d_ch)
        netG.apply(weights_init)
        netD.apply(weights_init)
    netG.to(device)
    netD.to(device)
    if "channels_last" in levers:
        netG.to(memory_format=torch.channels_last)
        netD.to(memory_format=torch.channels_last)
    kw: dict[str, Any] = {"fused": True} if "fused" in levers else (
        {"foreach": True} if "foreach" in levers else {})
    optG = torch.optim.Adam(netG.parameters(), lr=cfg.g_optim.lr,
                            betas=tuple(cfg.g_optim.betas), **kw)
    optD = torch.optim.Adam(netD.parameters(), lr=cfg.d_optim.lr,
                            betas=tuple(cfg.d_optim.betas), **kw)
    G = torch.compile(netG) if "compile" in levers else netG
    D = torch.compile(netD) if "compile" in levers else netD
    cast = (lambda: torch.autocast(device.type, torch.bfloat16)) if "bf16" in levers else (
        contextlib.nullcontext)
    sync = "nosync" not in levers
    criterion = nn.BCELoss()
    adv = ADVERSARIAL[cfg.loss.adv]
    w = cfg.loss.wrong_weight if cfg.loss.matching_aware else 0.0
    log = {"line": ""}  # main.py prints this line every step

    def step(real: torch.Tensor, labels: torch.Tensor) -> None:
        b = real.shape[0]
        if "channels_last" in levers:
            real = real.contiguous(memory_format=torch.channels_last)
        tags = labels.to(real.dtype) if conditional else None
        # (1) Update D network
        D.zero_grad()
        with cast():
            out_real = D(real, tags).score if conditional else D(real)
            err_real = adv.d_real(out_real) if conditional else criterion(
                out_real, torch.ones(b, device=device))
        err_real.backward()
        err_wrong = torch.zeros((), device=device)
        if w > 0:
            with cast():
                out_wrong = D(real, wrong_tags(labels, group_sizes).to(real.dtype)).score
                err_wrong = w / (1 + w) * adv.d_fake(out_wrong)
            err_wrong.backward()
        noise = torch.randn(b, nz, device=device) if conditional else torch.randn(
            b, nz, 1, 1, device=device)
        with cast():
            fake = G(noise, tags) if conditional else G(noise)
            out_fake = D(fake.detach(), tags).score if conditional else D(fake.detach())
            err_fake = (adv.d_fake(out_fake) / (1 + w) if conditional
                        else criterion(out_fake, torch.zeros(b, device=device)))
        err_fake.backward()
        optD.step()
        # (2) Update G network
        G.zero_grad()
        with cast():
            out = D(fake, tags).score if conditional else D(fake)
            err_g = adv.g_loss(out) if conditional else criterion(out, torch.ones(b,
                                                                                  device=device))
        err_g.backward()
        optG.step()
        if sync:
            err_d = err_real + err_wrong + err_fake
            log["line"] = (f"Loss_D: {err_d.item():.4f} Loss_G: {err_g.item():.4f} "
                           f"D(x): {out_real.float().mean().item():.4f} D(G(z)): "
                           f"{out_fake.float().mean().item():.4f} / "
                           f"{out.float().mean().item():.4f}")

    return step


def time_reference(cfg: Any, levers: frozenset[str], *, warmup: int, steps: int,
                   max_seconds: float, workers: int, count_flops: bool,
                   device: torch.device = CPU) -> TrainTiming:
    """Steady-state img/s of the reference loop with ``levers`` on ``device``."""
    from trainer.data import read_listing

    vocab = read_listing(Path(cfg.data.path)).vocab if cfg.model.cond != "none" else None
    step = reference_step(cfg, levers, list(vocab.group_sizes) if vocab else [], device)
    clock = StepClock(warmup, steps, max_seconds, count_flops=count_flops)
    clock.start(cfg.batch_size, mixed_precision="bf16" if "bf16" in levers else "no",
                device=device)
    batches = reference_batches(cfg, levers, workers, device)
    while not clock.tick():
        real, labels = next(batches)
        step(real, labels)
    batches.close()  # ends the DataLoader workers
    return clock.result()


# -- variants ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    loop: str  # "reference" | "project"
    levers: frozenset[str] = frozenset()

    def name(self, channels_last: bool) -> str:
        """Table label; the project's channels_last lever toggles the preset's value."""
        if self.loop == "reference":
            return " + ".join(["reference", *sorted(self.levers)])
        parts = ["project"]
        for lever in sorted(self.levers):
            if lever == "channels_last":
                parts.append(f"channels_last {'off' if channels_last else 'on'}")
            else:
                parts.append(lever)
        return " + ".join(parts)


def parse_levers(text: str) -> list[frozenset[str]]:
    """``"a,b+c"`` -> [{a}, {b, c}]; unknown names are an error naming them."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        combo = frozenset(x.strip() for x in item.split("+"))
        bad = sorted(combo - set(LEVERS))
        if bad:
            raise SystemExit(f"--levers: unknown lever(s) {', '.join(bad)}; "
                             f"choose from {', '.join(LEVERS)}")
        if {"foreach", "fused"} <= combo:
            raise SystemExit("--levers: foreach and fused exclude each other")
        out.append(combo)
    return out


def variants(levers: list[frozenset[str]]) -> list[Variant]:
    out = [Variant("reference"), Variant("project")]
    for combo in levers:
        out.append(Variant("reference", combo))
        if combo <= PROJECT_SWITCHES:
            out.append(Variant("project", combo))
    return list(dict.fromkeys(out))


def project_overrides(cfg: Any, variant: Variant, base: list[str]) -> list[str]:
    cl = cfg.channels_last != ("channels_last" in variant.levers)
    return [*base, f"mixed_precision={'bf16' if 'bf16' in variant.levers else 'no'}",
            f"channels_last={str(cl).lower()}"]


# -- main -------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["dcgan_avatars", "cgan_avatars"],
                   help="training presets (default: dcgan_avatars cgan_avatars)")
    p.add_argument("--data", help="dataset folder (default: each preset's data.path)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--levers", default=DEFAULT_LEVERS,
                   help=f"comma-separated, + combines (default {DEFAULT_LEVERS}); '' for none")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations per run")
    p.add_argument("--steps", type=int, default=20, help="timed iterations per run")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="stop timing a run after this long (at least 2 steps)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ref-workers", type=int, default=2,
                   help="DataLoader workers of the reference (main.py's default: 2)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where both loops run (auto: CUDA when a device is visible)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for every run, e.g. model.g_ch=32")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--tiny", action="store_true",
                   help="48 fresh avatars (or --data), batch 4, narrow nets, 1+2 steps, 1 repeat, "
                        "1 thread, no compile: a smoke test in seconds")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible to torch here")
    if args.tiny:
        args.batch, args.warmup, args.steps, args.repeats, args.ref_workers = 4, 1, 2, 1, 0
        args.threads = args.threads or 1  # no OpenMP spinning against a busy machine
        if args.levers == DEFAULT_LEVERS:
            args.levers = DEFAULT_LEVERS.replace(",compile", "")
        args.set = [*TINY_OVERRIDES, *args.set]
    require_at_least_one(p, args, "batch", "warmup", "steps", "repeats")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from trainer.config import ConfigError, load_config
    from trainer.data import load_configured_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="tagface-bench-"))
    try:
        base = [*args.set, f"batch_size={args.batch}"]
        if args.tiny:
            data = Path(args.data) if args.data else tiny_avatars(tmp / "avatars", 48, 64)
            base += [f"data.path={data}", f"data.cache_dir={tmp / 'cache'}"]
        elif args.data:
            base.append(f"data.path={args.data}")
        try:
            cfgs = {p: load_config(p, base) for p in args.presets}
        except ConfigError as e:
            raise SystemExit(f"error: {e}") from None
        for cfg in cfgs.values():  # build or open the cache outside any timing
            load_configured_dataset(cfg.data)
        machine = machine_info()
        n, reps = (128, 1) if args.tiny else (8192 if args.device == "cuda" else 2048, 3)
        peaks = {k: matmul_peak_gflops(dt, n, reps, device=args.device)
                 for k, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
        peak = {k: v[0] for k, v in peaks.items()}
        peak_n = {k: v[1] for k, v in peaks.items()}
        vs = variants(parse_levers(args.levers))
        runs: dict[tuple[str, Variant], list[TrainTiming]] = {}
        flops: dict[tuple[str, str], float] = {}
        # The project's device is Accelerate's: keep it off a visible GPU for --device cpu.
        with env_vars(ACCELERATE_USE_CPU="1" if args.device == "cpu" else None):
            for r in range(args.repeats):
                for preset, cfg in cfgs.items():
                    for v in vs:
                        count = (preset, v.loop) not in flops and "compile" not in v.levers
                        t = measure(preset, cfg, v, base, tmp / "runs" / f"{preset}-{r}", args,
                                    count)
                        if count and math.isfinite(t.flops_per_step):
                            flops[(preset, v.loop)] = t.flops_per_step
                        runs.setdefault((preset, v), []).append(t)
                        print(f"  [{r + 1}/{args.repeats}] {preset:<14} "
                              f"{v.name(cfg.channels_last):<40} {t.img_per_s:8.1f} img/s "
                              f"({t.steps} steps)", flush=True)
        finish_machine(machine)
        report = build_report(args, machine, peak, cfgs, vs, runs, flops)
        report["peak_matmul_n"] = peak_n
        print()
        print(render(report))
        if args.json:
            write_json(args.json, report)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def measure(preset: str, cfg: Any, v: Variant, base: list[str], run_dir: Path,
            args: argparse.Namespace, count_flops: bool) -> TrainTiming:
    """One timed run of variant ``v`` of ``preset``."""
    if "compile" in v.levers:
        torch._dynamo.reset()  # fresh caches: earlier variants must not use up the recompile limit
    if v.loop == "reference":
        return time_reference(cfg, v.levers, warmup=args.warmup, steps=args.steps,
                              max_seconds=args.max_seconds, workers=args.ref_workers,
                              count_flops=count_flops, device=torch.device(args.device))
    try:
        return time_training(preset, project_overrides(cfg, v, base), run_dir,
                             warmup=args.warmup, steps=args.steps, max_seconds=args.max_seconds,
                             count_flops=count_flops,
                             compile_backend="inductor" if "compile" in v.levers else None)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def arch_label(cfg: Any) -> str:
    return "DCGAN" if cfg.model.cond == "none" else "cGAN"


def build_report(args: argparse.Namespace, machine: dict, peak: dict[str, float],
                 cfgs: dict[str, Any], vs: list[Variant],
                 runs: dict[tuple[str, Variant], list[TrainTiming]],
                 flops: dict[tuple[str, str], float]) -> dict[str, Any]:
    """Medians, ratios, FLOP/s, lever verdicts and goals, as one JSON-able dict."""
    rows: list[dict[str, Any]] = []
    speed: dict[tuple[str, Variant], float] = {}
    for key, ts in runs.items():
        speed[key] = median([t.img_per_s for t in ts])
    ordered = sorted(vs, key=lambda v: v.loop != "reference")  # reference rows first
    for preset, cfg in cfgs.items():
        for v in ordered:
            ts, ips = runs[(preset, v)], speed[(preset, v)]
            f = flops.get((preset, v.loop), math.nan)
            gflops = f * ips / ts[0].batch_size / 1e9
            kind = "bf16" if "bf16" in v.levers else "fp32"
            rows.append({
                "preset": preset, "arch": arch_label(cfg), "loop": v.loop,
                "levers": sorted(v.levers), "variant": v.name(cfg.channels_last),
                "img_per_s": ips, "img_per_s_runs": [t.img_per_s for t in ts],
                "step_ms_median": median([s for t in ts for s in t.step_ms]),
                "steps_timed": [t.steps for t in ts], "batch_size": ts[0].batch_size,
                "vs_reference": ips / speed[(preset, Variant("reference"))],
                "vs_project": ips / speed[(preset, Variant("project"))],
                "gflop_per_step": f / 1e9, "gflop_per_s": gflops,
                "peak_kind": kind, "pct_of_peak": 100 * gflops / peak[kind],
            })
    levers = []
    for row in rows:
        if not row["levers"]:
            continue
        gain = row["vs_reference"] if row["loop"] == "reference" else row["vs_project"]
        if row["loop"] == "project" and row["levers"] == ["channels_last"]:
            gain = 1 / gain  # the project variant turns the preset's channels_last off
        levers.append({"preset": row["preset"], "loop": row["loop"], "levers": row["levers"],
                       "gain": gain, "wins": gain > WIN})
    by_arch = {arch_label(c): p for p, c in cfgs.items()}
    goals: dict[str, Any] = {}
    if "DCGAN" in by_arch:
        p = by_arch["DCGAN"]
        value = speed[(p, Variant("project"))] / speed[(p, Variant("reference"))]
        goals["dcgan_vs_reference"] = {"value": value, "target": GOAL_VS_REFERENCE,
                                       "met": value >= GOAL_VS_REFERENCE}
    if {"DCGAN", "cGAN"} <= set(by_arch):
        value = (speed[(by_arch["cGAN"], Variant("project"))]
                 / speed[(by_arch["DCGAN"], Variant("project"))])
        goals["cgan_vs_dcgan"] = {"value": value, "target": GOAL_CGAN_VS_DCGAN,
                                  "met": value >= GOAL_CGAN_VS_DCGAN}
    return {"benchmark": "train_throughput", "machine": machine,
            "settings": {"presets": list(cfgs), "batch": args.batch, "warmup": args.warmup,
                         "steps": args.steps, "max_seconds": args.max_seconds,
                         "repeats": args.repeats, "ref_workers": args.ref_workers,
                         "levers": args.levers, "overrides": args.set, "tiny": args.tiny,
                         "device": args.device,
                         "image_size": {p: c.data.size for p, c in cfgs.items()}},
            "peak_gflops": peak, "results": rows, "levers": levers, "goals": goals}


def render(report: dict[str, Any]) -> str:
    """The Markdown printed at the end (and pasted into BENCHMARKS.md)."""
    s, peak = report["settings"], report["peak_gflops"]
    lines = [machine_line(report["machine"]),
             f"Matmul peak (torch.mm, n^3 with n = {report['peak_matmul_n']['fp32']} / "
             f"{report['peak_matmul_n']['bf16']}): {fmt(peak['fp32'])} GFLOP/s fp32, "
             f"{fmt(peak['bf16'])} GFLOP/s bf16 on {s.get('device', 'cpu')}. Batch {s['batch']}, median of {s['repeats']} interleaved runs of "
             f"{s['steps']} timed steps after {s['warmup']} warm-up; reference DataLoader "
             f"workers {s['ref_workers']}.", ""]
    header = ["model", "variant", "img/s", "range", "x reference", "x project", "GFLOP/step",
              "GFLOP/s", "% of peak"]
    rows = [[r["arch"], r["variant"], fmt(r["img_per_s"]),
             f"{min(r['img_per_s_runs']):.0f}-{max(r['img_per_s_runs']):.0f}",
             fmt(r["vs_reference"], 2) + "x", fmt(r["vs_project"], 2) + "x",
             fmt(r["gflop_per_step"], 1), fmt(r["gflop_per_s"]),
             f"{fmt(r['pct_of_peak'])}% {r['peak_kind']}"] for r in report["results"]]
    lines.append(md_table(header, rows))
    if report["levers"]:
        lines += ["", "Levers (gain over the variant without it; wins above "
                      f"{WIN:.2f}x):", ""]
        lines.append(md_table(["preset", "loop", "lever", "gain", "wins"], [
            [x["preset"], x["loop"], " + ".join(x["levers"]), fmt(x["gain"], 2) + "x",
             "yes" if x["wins"] else "no"] for x in report["levers"]]))
    if report["goals"]:
        names = {"dcgan_vs_reference": "DCGAN project / reference img/s",
                 "cgan_vs_dcgan": "cGAN project / DCGAN project img/s"}
        lines += ["", md_table(["goal", "value", "target", "met"], [
            [names[k], fmt(g["value"], 2), f">= {g['target']}", "yes" if g["met"] else "no"]
            for k, g in report["goals"].items()])]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

"""Parameter counts and FLOPs of the GAN trunks, side by side (no training, a few seconds).

    python -m benchmarks.model_costs                      # 64 px, the trunks below
    python -m benchmarks.model_costs --size 128 --json out.json
    python -m benchmarks.model_costs --tiny --json out.json   # 32 px; CI

FLOPs are counted by ``torch.utils.flop_counter`` on one forward pass of G and of D
(conditional, projection head, 22 tags as the avatars' hair + eyes) at batch 1, so
they do not depend on the machine; a training step of the GAN recipe costs about
3x (forward + backward) the forward FLOPs of each pass it makes.
"""

from __future__ import annotations

import argparse
import sys

import torch

# name -> config overrides (each on top of the defaults, model.cond=projection)
TRUNKS: dict[str, list[str]] = {
    "dcgan, width 64 (pytorch/examples)": ["model.arch=dcgan", "model.g_ch=64", "model.d_ch=64"],
    "dcgan, width 32 (cgan_avatars_rgb, cgan_avatars_dcgan)": ["model.arch=dcgan",
                                                               "model.g_ch=32", "model.d_ch=32"],
    "dcgan + palette 16, nearest, width 32 (cgan_avatars)": [
        "model.arch=dcgan", "model.g_ch=32", "model.d_ch=32", "model.g_palette=16",
        "model.g_upsample=nearest"],
    "dcgan + palette 16, nearest_last, width 32 (cgan_avatars_nearest_last)": [
        "model.arch=dcgan", "model.g_ch=32", "model.d_ch=32", "model.g_palette=16",
        "model.g_upsample=nearest_last"],
    "dcgan + palette 16, bilinear_last, width 32": [
        "model.arch=dcgan", "model.g_ch=32", "model.d_ch=32", "model.g_palette=16",
        "model.g_upsample=bilinear_last"],
    "dcgan + nearest, width 32 (g_upsample=nearest)": ["model.arch=dcgan", "model.g_ch=32",
                                                 "model.d_ch=32", "model.g_upsample=nearest"],
    "ml2020, width 64": ["model.arch=ml2020", "model.g_ch=64", "model.d_ch=64"],
    "resnet, width 16": ["model.arch=resnet", "model.g_ch=16", "model.d_ch=16",
                         "model.spectral_norm=true", "model.d_bn=false"],
    "resnet, width 32": ["model.arch=resnet", "model.g_ch=32", "model.d_ch=32",
                         "model.spectral_norm=true", "model.d_bn=false"],
}
GROUPS = [12, 10]


def costs(overrides: list[str], size: int) -> dict[str, float]:
    """Parameters (millions) and forward GFLOP per image of G and D for one trunk."""
    from torch.utils.flop_counter import FlopCounterMode

    from trainer.config import load_config
    from trainer.models import build_discriminator, build_generator

    cfg = load_config(None, [*overrides, f"data.size={size}", "model.cond=projection"])
    G, D = build_generator(cfg, sum(GROUPS)).eval(), build_discriminator(cfg, GROUPS).eval()
    tags = torch.zeros(1, sum(GROUPS))
    tags[0, 0] = tags[0, GROUPS[0]] = 1
    with torch.no_grad():
        with FlopCounterMode(display=False) as fg:
            x = G(torch.randn(1, cfg.model.z_dim), tags)
        with FlopCounterMode(display=False) as fd:
            D(x, tags)
    return {"g_params_m": sum(p.numel() for p in G.parameters()) / 1e6,
            "d_params_m": sum(p.numel() for p in D.parameters()) / 1e6,
            "g_gflop": fg.get_total_flops() / 1e9, "d_gflop": fd.get_total_flops() / 1e9}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import md_table, write_json

    p = argparse.ArgumentParser(prog="python -m benchmarks.model_costs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64, choices=(32, 64, 128))
    p.add_argument("--json", metavar="OUT")
    p.add_argument("--tiny", action="store_true", help="32 px (CI)")
    args = p.parse_args(argv)
    size = 32 if args.tiny else args.size
    rows = [{"trunk": name, "size": size, **costs(ov, size)} for name, ov in TRUNKS.items()]
    print(f"Per image at {size} px, one forward pass (torch.utils.flop_counter):")
    print(md_table(["trunk", "G params (M)", "D params (M)", "G GFLOP", "D GFLOP"],
                   [[r["trunk"], f"{r['g_params_m']:.2f}", f"{r['d_params_m']:.2f}",
                     f"{r['g_gflop']:.3f}", f"{r['d_gflop']:.3f}"] for r in rows]))
    if args.json:
        write_json(args.json, {"benchmark": "model_costs", "results": rows,
                               "settings": {"size": size, "tiny": args.tiny}})
    return 0


if __name__ == "__main__":
    sys.exit(main())

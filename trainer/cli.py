"""``tagface STAGE [options]``: one command for every stage, the same options as ``python -m``.

    tagface data avatars --out data/avatars --count 6000 --size 64
    tagface train --config cgan_avatars
    tagface evaluate --run runs/cgan_avatars
    tagface translate --run runs/stargan_avatars --image in.png --to Blond_Hair --out out.png
    tagface export --run runs/cgan_avatars --out models
    tagface demo --models models

Each stage hands its arguments unchanged to the module main that ``python -m`` runs, and
imports only that module (``tagface demo`` does not import torch). Several training
processes are still started with ``accelerate launch -m trainer.train``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from trainer import __version__

# stage -> (module whose main() runs it, what it does)
STAGES: dict[str, tuple[str, str]] = {
    "data": ("trainer.data.__main__", "render the avatars, inspect, cache or preview a dataset"),
    "train": ("trainer.train", "train a preset or YAML config into a run folder"),
    "evaluate": ("trainer.evaluate.__main__", "FID/KID, tag accuracy and diversity of a run"),
    "translate": ("trainer.translate", "StarGAN: translate images to target domains"),
    "export": ("export.__main__", "export a run's EMA generator to ONNX, with parity checks"),
    "demo": ("demo.__main__", "serve exported .onnx models in a Gradio demo"),
}


def usage() -> str:
    name_w = max(map(len, STAGES))
    what_w = max(len(what) for _, what in STAGES.values())
    rows = "\n".join(f"  {name:<{name_w}}  {what:<{what_w}}  python -m "
                     f"{mod.removesuffix('.__main__')}" for name, (mod, what) in STAGES.items())
    return ("usage: tagface STAGE [options]   (tagface STAGE --help: the stage's options)\n"
            "       tagface --version\n\n"
            f"stages (each is the same as the python -m command beside it):\n{rows}\n\n"
            "Several training processes: accelerate launch -m trainer.train ... (README).\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return 0
    if args[0] in ("-V", "--version"):
        print(f"tagface {__version__}")
        return 0
    stage, rest = args[0], args[1:]
    if stage not in STAGES:
        print(f"error: unknown stage {stage!r}; expected one of {', '.join(STAGES)} "
              f"(tagface --help)", file=sys.stderr)
        return 2
    module = importlib.import_module(STAGES[stage][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())

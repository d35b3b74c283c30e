"""``python -m export --run RUN --out DIR [--name NAME] [--checkpoint CKPT] [--opset N] [--fp16]``

Writes DIR/NAME.onnx (NAME defaults to the run folder's name) and its model card
DIR/NAME.md, and prints the checks: onnx.checker, and ONNX Runtime against
PyTorch at batch 1 and --batch.
Exit status 0 on success, 1 if the parity check fails, 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export",
                                description="Export a run's EMA generator to ONNX, with checks.")
    p.add_argument("--run", required=True, help="run folder (config.yaml, vocab.json, checkpoints/)")
    p.add_argument("--out", required=True, help="output folder; the model is OUT/NAME.onnx, its "
                                             "card OUT/NAME.md")
    p.add_argument("--name", help="file name without .onnx (default: the run folder's name)")
    p.add_argument("--checkpoint", help="checkpoint folder, its name under RUN/checkpoints, or "
                                        "its g_ema.safetensors (default: checkpoints/latest)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--fp16", action="store_true",
                   help="float16 weights; inputs and outputs stay float32")
    p.add_argument("--batch", type=int, default=8,
                   help="larger batch of the parity check, besides batch 1 (default 8)")
    args = p.parse_args(argv)
    if args.batch < 2:
        p.error("--batch must be >= 2")
    if args.name is not None and (not args.name or "/" in args.name or "\\" in args.name):
        p.error("--name must be a plain file name")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from export.onnx_export import ExportError, ParityError, export_run  # torch: after parsing

    try:
        result = export_run(args.run, args.out, name=args.name, checkpoint=args.checkpoint,
                            opset=args.opset, fp16=args.fp16, batches=(1, args.batch))
    except ParityError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())

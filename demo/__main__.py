"""``python -m demo --models DIR [--host 127.0.0.1] [--port 7860] [--share] [--max-upload-mb N]``

Serves every ``.onnx`` file of DIR (and example images from DIR/examples/) at
once: no training, no torch. Binds 127.0.0.1 unless --host says otherwise; a
public gradio.live link only with --share, and if that tunnel cannot be made
the local server keeps running and says so. Exit status 2 on bad input.
"""

from __future__ import annotations

import argparse
import errno
import signal
import socket
import sys
import time
from pathlib import Path

DEFAULT_PORT = 7860


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m demo",
                                description="Gradio demo of exported tagface models on ONNX "
                                            "Runtime: generation and style transfer.")
    p.add_argument("--models", required=True, metavar="DIR",
                   help="folder of .onnx files (python -m export --out DIR); example images "
                        "for style transfer in DIR/examples/")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0: "
                        "every interface)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--share", action="store_true",
                   help="also open a temporary public gradio.live link (needs internet)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, metavar="N",
                   help="largest accepted upload, in MB (default 10)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="ONNX Runtime provider: auto (CUDA when really usable), cpu, cuda")
    args = p.parse_args(argv)
    if not 1 <= args.port <= 65535:
        p.error(f"--port {args.port}: expected 1..65535")
    if not args.max_upload_mb > 0:
        p.error(f"--max-upload-mb {args.max_upload_mb}: must be > 0")
    if not Path(args.models).is_dir():
        p.error(f"--models {args.models}: no such folder (export models into it with "
                f"`python -m export --run RUN --out {args.models}`)")
    return args


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served (in use, unknown address), or None; checked
    before gradio and the models load, so that the answer comes at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return f"unknown address {host!r} ({e.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return "the port is in use; choose another with --port"
            return e.strerror or str(e)
    return None


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM closes the server as Ctrl+C does; a second one while closing is ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = parse_args(argv)
    problem = port_problem(args.host, args.port)
    if problem:
        print(f"error: cannot serve on {args.host}:{args.port}: {problem}", file=sys.stderr)
        return 2
    from demo.app import CSS, DemoError, build_app  # gradio: after parsing

    try:
        demo = build_app(args.models, device=args.device, max_upload_mb=args.max_upload_mb)
    except DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cat = demo.tagface_app.catalog  # type: ignore[attr-defined]
    for name, m in cat.models.items():
        print(f"{name}: {m.summary()}")
    for s in cat.skipped:
        print(f"warning: not loaded: {s}", file=sys.stderr)
    try:
        _, local_url, share_url = demo.launch(
            server_name=args.host, server_port=args.port, share=args.share,
            max_file_size=int(args.max_upload_mb * 2**20), prevent_thread_lock=True,
            quiet=True, footer_links=["api", "settings"], ssr_mode=False, css=CSS)
    except OSError as e:
        why = ("the port is in use; choose another with --port" if "empty port" in str(e)
               else str(e))
        print(f"error: cannot serve on {args.host}:{args.port}: {why}", file=sys.stderr)
        return 2
    print(f"tagface demo: {local_url} (ready in {time.perf_counter() - t0:.1f} s; Ctrl+C stops "
          f"it)", flush=True)
    if args.share:
        if share_url:
            print(f"public link: {share_url} (temporary; anyone with it can use the demo)",
                  flush=True)
        else:
            print("warning: --share: could not create a public gradio.live link (the share "
                  "server cannot be reached from here: no internet, a proxy or a firewall). "
                  f"The demo is still running locally at {local_url}", file=sys.stderr,
                  flush=True)
    signal.signal(signal.SIGTERM, _terminate)
    demo.block_thread()
    demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

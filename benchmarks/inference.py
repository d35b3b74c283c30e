"""Generator inference: ms per image in torch eager and in ONNX Runtime, and the demo's
round trip through gradio_client.

    python -m benchmarks.inference                      # the three avatar presets, batch 1 and 64
    python -m benchmarks.inference --runs runs/cgan_avatars runs/stargan_avatars   # trained runs
    python -m benchmarks.inference --tiny --json out.json   # seconds; CI

Models: each preset's generator at full size with random weights (its BatchNorm running
statistics set from a few random batches, so activations have a trained-like scale), or
the EMA generator of each --runs folder. Exported through export.onnx_export into a
temporary folder (dynamo exporter and its own ORT-vs-PyTorch check); nothing is downloaded.
  torch      eval mode, torch.inference_mode(), fp32, torch's threads
  ort fp32   onnxruntime CPUExecutionProvider, session.run, its default threads
  ort fp16   export --fp16 (float16 weights and compute, float32 inputs and outputs)
  ort int8   onnxruntime.quantization.quantize_static of the fp32 file: QDQ, per-channel
             int8 weights, uint8 activations calibrated on random inputs (z ~ N(0, 1),
             valid one-hot tags, images in [-1, 1]: the inputs a generator gets)
Quality check: PSNR of each ONNX Runtime variant's uint8 images against PyTorch fp32 on 16
fresh inputs; a variant passes at >= 35 dB (fp16 must also pass the exporter's 2e-2 limit).
Timing: per call, after warm-up; median over the calls of a run, then over --repeats
interleaved runs. ms per image = ms per call / batch.
Demo: ``python -m demo --models <the fp32 exports>`` on 127.0.0.1 and a free port, then
``/generate`` for the cGAN (count 1, and 8 as the page's default), each round trip timed
whole, three ways taking turns: gradio_client ``predict()`` as constructed by default
(request, queue, ONNX Runtime, PNG, download); gradio_client given one SSL context to
reuse (``Client(url, ssl_verify=ssl.create_default_context())``: by default each of its
HTTP calls builds a new httpx client that loads the CA bundle again, even for http://);
and the bare HTTP API (POST /gradio_api/call/generate, the SSE answer, GET of the PNG),
which shows what the client library itself adds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    env_vars,
    finish_machine,
    fmt,
    machine_info,
    machine_line,
    md_table,
    median,
    percentile,
    require_at_least_one,
)

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("dcgan_avatars", "cgan_avatars", "stargan_avatars")
PRECISIONS = ("fp32", "fp16", "int8")
QUALITY_DB = 35.0  # PSNR (uint8 images) against PyTorch fp32 for a variant to count
GOAL_ORT_SPEEDUP = 3.0  # cGAN, batch 1: torch eager ms / ONNX Runtime ms
GOAL_DEMO_P50_MS = 100.0
DEMO_COUNTS = (1, 8)  # images per /generate request; 8 is the page's default
TINY = {  # narrow, 32 px versions of the presets (as tests/test_demo.py)
    "common": ["data.size=32", "model.g_ch=8", "model.d_ch=8", "model.z_dim=8",
               "model.tag_embed=8"],
    "stargan_avatars": ["model.repeat_num=1", "model.d_repeat_num=2"],
}
START_TIMEOUT = 120  # seconds for the demo server to come up


@dataclass
class Subject:
    """One generator: the PyTorch model, its exports and what the graph takes."""

    name: str
    model: Any  # nn.Module, eval mode, fp32, CPU
    signature: Any  # export.onnx_export.Signature
    files: dict[str, Path]  # precision -> .onnx
    quality: dict[str, dict[str, Any]]  # precision -> {"psnr_db", "max_abs", "passed", "note"}


# -- models -------------------------------------------------------------------------
def calibrate_norms(model: Any, sig: Any, batches: int = 4, batch: int = 32) -> None:
    """Running statistics of every BatchNorm / tracked InstanceNorm from random inputs,
    so that an untrained generator's eval-mode activations have a realistic scale."""
    import torch
    from torch.nn.modules.batchnorm import _NormBase

    from export.onnx_export import random_inputs

    norms = [m for m in model.modules() if isinstance(m, _NormBase)
             and m.track_running_stats and m.running_mean is not None]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    rng = np.random.default_rng(7)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(*(torch.from_numpy(v) for v in random_inputs(sig, batch, rng).values()))
    for m, mom in zip(norms, momenta, strict=True):
        m.momentum = mom
    model.eval()


def build_subject(source: str, out: Path, tiny: bool, precisions: list[str]) -> Subject:
    """A preset (random weights) or a run folder (its EMA generator), exported."""
    import torch

    from export.onnx_export import ExportError, export_generator, signature
    from trainer.config import config_sha256, load_config
    from trainer.data.vocab import Domains, mlds_vocab
    from trainer.models import build_generator

    if Path(source).is_dir():
        from trainer.runs import load_generator

        loaded = load_generator(source)
        name, model, cfg, vocab = Path(source).resolve().name, loaded.model, loaded.config, \
            loaded.vocab
    else:
        name = source
        over = [*TINY["common"], *TINY.get(source, [])] if tiny else []
        cfg = load_config(source, over)
        if cfg.recipe == "stargan":
            vocab: Any = Domains(tuple(cfg.data.attrs), ())
            n_cond = vocab.n_domains
        else:
            vocab = mlds_vocab() if cfg.model.cond != "none" else None  # the avatars' tags
            n_cond = vocab.n_tags if vocab else 0
        torch.manual_seed(0)
        model = build_generator(cfg, n_cond)
        calibrate_norms(model, signature(cfg, vocab), batches=2 if tiny else 4,
                        batch=8 if tiny else 32)
    model = model.eval()
    sig = signature(cfg, vocab)
    files: dict[str, Path] = {}
    quality: dict[str, dict[str, Any]] = {}
    for p in ("fp32", "fp16"):
        if p not in precisions and not (p == "fp32" and "int8" in precisions):
            continue
        path = out / f"{name}.onnx" if p == "fp32" else out / "fp16" / f"{name}.onnx"
        try:
            export_generator(model, cfg, vocab, path, step=0, config_hash=config_sha256(cfg),
                             fp16=p == "fp16", batches=(1, 2))
            files[p] = path
        except ExportError as e:  # ParityError: beyond the exporter's tolerance
            quality[p] = {"psnr_db": math.nan, "max_abs": math.nan, "passed": False,
                          "note": str(e).splitlines()[0][:200]}
    if "int8" in precisions and "fp32" in files:
        path = out / "int8" / f"{name}.onnx"
        try:
            quantize_int8(files["fp32"], path, sig, batches=2 if tiny else 8)
            files["int8"] = path
        except Exception as e:  # the quantizer's errors have no common base class
            quality["int8"] = {"psnr_db": math.nan, "max_abs": math.nan, "passed": False,
                               "note": f"{type(e).__name__}: {e}"[:200]}
    for p, path in files.items():
        quality[p] = check_quality(model, path, sig)
    files = {p: f for p, f in files.items() if p in precisions}
    return Subject(name, model, sig, files, {p: q for p, q in quality.items() if p in precisions})


def quantize_int8(src: Path, dst: Path, sig: Any, batches: int) -> None:
    """Static QDQ int8 quantization calibrated on random generator inputs."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from export.onnx_export import random_inputs

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(11)
            self.feeds = iter([random_inputs(sig, 16, rng) for _ in range(batches)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)


def session(path: Path, threads: int = 0) -> Any:
    """A CPU InferenceSession logging errors only; ``threads`` 0 = ONNX Runtime's default."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def check_quality(model: Any, path: Path, sig: Any) -> dict[str, Any]:
    """PSNR (uint8 images) and max abs difference of ONNX Runtime against PyTorch fp32."""
    import torch

    from export.onnx_export import random_inputs
    from export.runtime import to_uint8

    feeds = random_inputs(sig, 16, np.random.default_rng(123))
    with torch.inference_mode():
        ref = model(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    out = session(path).run([sig.output], feeds)[0].astype(np.float32)
    mse = float(np.mean((to_uint8(out).astype(np.float64) - to_uint8(ref)) ** 2))
    psnr = 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)
    return {"psnr_db": psnr, "max_abs": float(np.abs(out - ref).max()),
            "passed": psnr >= QUALITY_DB, "note": ""}


# -- timing -------------------------------------------------------------------------
def time_calls(fn: Callable[[], Any], target_s: float, max_calls: int = 500) -> float:
    """Median ms of one call of ``fn`` over enough calls to fill ``target_s`` (at least 3)."""
    fn()
    t = time.perf_counter()
    fn()  # the second call: allocations and thread pools are warm
    first = time.perf_counter() - t
    n = int(min(max_calls, max(3, target_s / max(first, 1e-6))))
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return median(times) * 1e3


def runners(s: Subject, batch: int, threads: int) -> dict[str, Callable[[], Any]]:
    """runtime label -> a zero-argument call producing one batch."""
    import torch

    from export.onnx_export import random_inputs

    feeds = random_inputs(s.signature, batch, np.random.default_rng(batch))
    tensors = [torch.from_numpy(v) for v in feeds.values()]

    def eager() -> Any:
        with torch.inference_mode():
            return s.model(*tensors)

    out: dict[str, Callable[[], Any]] = {"torch": eager}
    for p, path in s.files.items():
        sess = session(path, threads)
        out[f"ort {p}"] = lambda sess=sess: sess.run([s.signature.output], feeds)
    return out


# -- the demo -----------------------------------------------------------------------
class HttpApi:
    """Gradio's HTTP API without gradio_client: POST the call, read the SSE stream, GET
    each output file (what a minimal client must do)."""

    def __init__(self, base: str, api_name: str):
        self.base, self.name = base, api_name.strip("/")
        with urllib.request.urlopen(f"{base}/gradio_api/info", timeout=30) as r:
            info = json.load(r)
        self.params = info["named_endpoints"][api_name]["parameters"]

    def call(self, kwargs: dict[str, Any]) -> list[Any]:
        data = [kwargs.get(p["parameter_name"], p.get("parameter_default"))
                for p in self.params]
        req = urllib.request.Request(f"{self.base}/gradio_api/call/{self.name}",
                                     json.dumps({"data": data}).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            event = json.load(r)["event_id"]
        with urllib.request.urlopen(f"{self.base}/gradio_api/call/{self.name}/{event}",
                                    timeout=60) as r:
            stream = r.read().decode()
        if "event: complete" not in stream:
            raise RuntimeError(f"/{self.name} failed: {stream[-500:]}")
        result = json.loads([x for x in stream.splitlines() if x.startswith("data:")][-1][5:])
        for url in {o["url"] for o in result if isinstance(o, dict) and o.get("url")}:
            with urllib.request.urlopen(url, timeout=60) as r:
                r.read()
        return result


def demo_round_trip(models: Path, tmp: Path, model: str, counts: tuple[int, ...],
                    requests: int, warmup: int) -> dict[str, Any]:
    """p50 / p95 ms of gradio_client ``/generate`` against ``python -m demo``."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for d in ("gradio", "tmp", "dl"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp / "gradio"), "TMPDIR": str(tmp / "tmp"),
           "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost",
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "demo", "--models", str(models), "--port",
                             str(port), "--device", "cpu"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready: queue.Queue[bool] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("tagface demo: "):
                ready.put(True)
        ready.put(False)

    threading.Thread(target=read, daemon=True).start()
    t0 = time.perf_counter()
    try:
        try:
            ok = ready.get(timeout=START_TIMEOUT)
        except queue.Empty:
            ok = False
        if not ok:
            raise RuntimeError("the demo did not start:\n" + "".join(lines)[-3000:])
        start_s = time.perf_counter() - t0
        from gradio_client import Client

        with env_vars(GRADIO_TEMP_DIR=str(tmp / "gradio")):
            client = Client(f"http://127.0.0.1:{port}/", download_files=str(tmp / "dl"),
                            verbose=False)
            reuse = Client(f"http://127.0.0.1:{port}/", download_files=str(tmp / "dl"),
                           verbose=False, ssl_verify=ssl.create_default_context())  # type: ignore[arg-type]
            out: dict[str, Any] = {"model": model, "server_start_s": start_s, "counts": {}}
            http = HttpApi(f"http://127.0.0.1:{port}", "/generate")
            for count in counts:
                request = {"model": model, "count": count, "mode": "noise"}
                ms, model_ms, http_ms, reuse_ms = [], [], [], []
                for i in range(warmup + requests):  # the three clients take turns
                    t = time.perf_counter()
                    _, caption = client.predict(**request, seed=i, api_name="/generate")
                    t1 = time.perf_counter()
                    http.call({**request, "seed": i})
                    t2 = time.perf_counter()
                    reuse.predict(**request, seed=i, api_name="/generate")
                    t3 = time.perf_counter()
                    if i >= warmup:
                        ms.append((t1 - t) * 1e3)
                        http_ms.append((t2 - t1) * 1e3)
                        reuse_ms.append((t3 - t2) * 1e3)
                        found = re.search(r" in (\d+) ms", caption)
                        if found:
                            model_ms.append(float(found.group(1)))
                out["counts"][str(count)] = {
                    "requests": len(ms), "p50_ms": percentile(ms, 50),
                    "p95_ms": percentile(ms, 95), "mean_ms": sum(ms) / len(ms),
                    "http_p50_ms": percentile(http_ms, 50), "http_p95_ms": percentile(http_ms, 95),
                    "ssl_reuse_p50_ms": percentile(reuse_ms, 50),
                    "ssl_reuse_p95_ms": percentile(reuse_ms, 95),
                    "server_generate_ms_p50": percentile(model_ms, 50) if model_ms else math.nan}
            client.close()
            reuse.close()
        return out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- main ---------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.inference", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="*", default=list(PRESETS),
                   help="presets to build with random weights (default: the avatar presets)")
    p.add_argument("--runs", nargs="*", default=[], metavar="RUN",
                   help="run folders whose EMA generators to use as well")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.0,
                   help="timed seconds per runtime, batch and repeat")
    p.add_argument("--threads", type=int, default=0,
                   help="torch and ONNX Runtime threads (0: each library's default)")
    p.add_argument("--demo-requests", type=int, default=50,
                   help="timed /generate requests per count (0: skip the demo)")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--tiny", action="store_true",
                   help="narrow 32 px models, batch 1 and 4, 1 repeat, 1 thread, 5 demo "
                        "requests of count 1: a smoke test")
    args = p.parse_args(argv)
    if args.tiny:
        args.batches, args.repeats, args.seconds = [1, 4], 1, 0.02
        args.threads = args.threads or 1
        args.demo_requests = min(args.demo_requests, 5)
    if not args.presets and not args.runs:
        p.error("nothing to measure: give --presets or --runs")
    require_at_least_one(p, args, "batches", "repeats")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from benchmarks.common import write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="tagface-inference-"))
    try:
        models_dir = tmp / "models"
        t0 = time.perf_counter()
        subjects = [build_subject(s, models_dir, args.tiny, args.precisions)
                    for s in [*args.presets, *args.runs]]
        print(f"  exported {len(subjects)} generators in {time.perf_counter() - t0:.0f} s",
              flush=True)
        machine = machine_info()
        calls: dict[tuple[str, int, str], list[float]] = {}
        for r in range(args.repeats):
            for s in subjects:
                for b in args.batches:
                    for label, fn in runners(s, b, args.threads).items():
                        ms = time_calls(fn, args.seconds)
                        calls.setdefault((s.name, b, label), []).append(ms)
                        print(f"  [{r + 1}/{args.repeats}] {s.name:<16} batch {b:<3} "
                              f"{label:<9} {ms:9.2f} ms/call", flush=True)
        rows = []
        for (name, b, label), ms_runs in calls.items():
            ms = median(ms_runs)
            torch_ms = median(calls[(name, b, "torch")])
            precision = label.split()[-1] if label != "torch" else "fp32"
            s = next(x for x in subjects if x.name == name)
            q = s.quality.get(precision, {}) if label != "torch" else {}
            rows.append({"model": name, "batch": b, "runtime": label.split()[0],
                         "precision": precision, "ms_per_call": ms, "ms_per_image": ms / b,
                         "ms_per_call_runs": ms_runs, "speedup_vs_torch": torch_ms / ms,
                         "psnr_db": q.get("psnr_db", math.nan),
                         "quality_passed": q.get("passed", True)})
        failed = [{"model": s.name, "precision": p, **q} for s in subjects
                  for p, q in s.quality.items() if p not in s.files]
        cgan = next((s.name for s in subjects if s.signature.kind == "gan"
                     and "tags" in s.signature.inputs), None)
        demo = None
        if args.demo_requests > 0 and cgan is not None:
            counts = (1,) if args.tiny else DEMO_COUNTS
            demo = demo_round_trip(models_dir, tmp / "demo", cgan, counts, args.demo_requests,
                                   warmup=2 if args.tiny else 5)
        finish_machine(machine)
        goals = build_goals(rows, cgan, demo)
        report = {"benchmark": "inference", "machine": machine,
                  "settings": {"presets": args.presets, "runs": args.runs,
                               "batches": args.batches, "precisions": args.precisions,
                               "repeats": args.repeats, "seconds": args.seconds,
                               "threads": args.threads, "tiny": args.tiny,
                               "quality_db": QUALITY_DB},
                  "results": rows, "failed_variants": failed, "demo": demo, "goals": goals}
        print()
        print(render(report))
        if args.json:
            write_json(args.json, report)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def build_goals(rows: list[dict[str, Any]], cgan: str | None,
                demo: dict[str, Any] | None) -> dict[str, Any]:
    goals: dict[str, Any] = {}
    ort = [r for r in rows if r["model"] == cgan and r["batch"] == 1 and r["runtime"] == "ort"
           and r["quality_passed"]]
    if ort:
        best = max(ort, key=lambda r: r["speedup_vs_torch"])
        goals["cgan_ort_vs_torch_batch1"] = {
            "value": best["speedup_vs_torch"], "precision": best["precision"],
            "target": GOAL_ORT_SPEEDUP, "met": best["speedup_vs_torch"] >= GOAL_ORT_SPEEDUP}
    if demo:
        count = max(demo["counts"], key=int)
        for key, field in (("demo_generate_p50_ms", "p50_ms"),
                           ("demo_generate_p50_ms_ssl_reuse", "ssl_reuse_p50_ms")):
            p50 = demo["counts"][count][field]
            goals[key] = {"value": p50, "count": int(count), "target": GOAL_DEMO_P50_MS,
                          "met": p50 < GOAL_DEMO_P50_MS}
    return goals


def render(report: dict[str, Any]) -> str:
    """The Markdown printed at the end (and pasted into BENCHMARKS.md)."""
    s = report["settings"]
    lines = [machine_line(report["machine"]),
             f"Threads: {s['threads'] or 'each library default'}; median of {s['repeats']} "
             f"interleaved runs; quality: PSNR >= {s['quality_db']:.0f} dB against PyTorch fp32.",
             ""]
    rows = sorted(report["results"], key=lambda r: (r["model"], r["batch"], r["runtime"] != "torch",
                                                    PRECISIONS.index(r["precision"])))
    lines.append(md_table(
        ["model", "batch", "runtime", "weights", "ms/image", "ms/call", "x torch", "PSNR dB",
         "quality"],
        [[r["model"], r["batch"], r["runtime"], r["precision"], fmt(r["ms_per_image"], 3),
          fmt(r["ms_per_call"], 2), fmt(r["speedup_vs_torch"], 2) + "x",
          "-" if r["runtime"] == "torch" else fmt(r["psnr_db"], 1),
          "ref" if r["runtime"] == "torch" else ("pass" if r["quality_passed"] else "FAIL")]
         for r in rows]))
    for f in report["failed_variants"]:
        lines.append(f"\n{f['model']} {f['precision']}: not measured ({f['note']})")
    demo = report["demo"]
    if demo:
        lines += ["", f"Demo round trip (gradio_client /generate, model {demo['model']}, "
                      f"server up in {demo['server_start_s']:.1f} s):", ""]
        lines.append(md_table(
            ["images per request", "requests", "gradio_client p50 ms", "p95 ms",
             "gradio_client, one SSL context, p50 ms", "p95 ms", "HTTP API p50 ms", "p95 ms",
             "ONNX Runtime in the server, p50 ms"],
            [[c, d["requests"], fmt(d["p50_ms"]), fmt(d["p95_ms"]), fmt(d["ssl_reuse_p50_ms"]),
              fmt(d["ssl_reuse_p95_ms"]), fmt(d["http_p50_ms"]), fmt(d["http_p95_ms"]),
              fmt(d["server_generate_ms_p50"], 0)]
             for c, d in demo["counts"].items()]))
    g = report["goals"]
    if g:
        names = {"cgan_ort_vs_torch_batch1": "cGAN batch 1: torch ms / ONNX Runtime ms",
                 "demo_generate_p50_ms": "demo /generate p50 ms, gradio_client default",
                 "demo_generate_p50_ms_ssl_reuse": "demo /generate p50 ms, gradio_client with "
                                                   "one SSL context"}
        lines += ["", md_table(["goal", "value", "target", "met"], [
            [names[k] + (f" ({v['precision']})" if "precision" in v else
                         f" ({v['count']} images)"),
             fmt(v["value"], 2), (">= " if k.startswith("cgan") else "< ") + str(v["target"]),
             "yes" if v["met"] else "no"] for k, v in g.items()])]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

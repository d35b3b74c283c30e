"""Run an exported tagface generator with ONNX Runtime: numpy and onnxruntime only, no torch.

```python
from export.runtime import load_model
m = load_model("models/cgan_avatars.onnx")     # CUDA if really usable, else CPU
m.provider                                      # "CPUExecutionProvider"
imgs = m.generate("blue hair red eyes", n=4, seed=0)   # uint8 [4, 64, 64, 3]
imgs = m.generate({"hair": "blue", "eyes": "random"}, n=4, seed=0)
imgs = m.generate("blue hair red eyes", n=4, seed=0, psi=0.7)   # truncation trick
s = load_model("models/stargan_avatars.onnx")
out = s.translate(img_uint8_hwc, ["blonde_hair"])   # uint8 [S, S, 3]
```
Everything the model needs (tag groups, z size, image size, domains, value range,
how to prepare an input image) is read from the file's metadata_props; no tagface
code is needed to describe it. Noise comes from ``trainer.noise`` (numpy only:
importing this module never imports torch).
Provider choice: CUDAExecutionProvider only when onnxruntime has it, an NVIDIA
driver with a device answers, and the CUDA/cuDNN libraries load; otherwise CPU,
decided without asking ONNX Runtime for CUDA (which prints error lines when it
cannot have it).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import logging
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from trainer import noise

log = logging.getLogger("tagface.runtime")

RANDOM = "random"  # a tag value meaning "draw this group's tag at random"
GAN_INPUTS = ("z", "tags")  # "tags" absent when unconditional
STARGAN_INPUTS = ("image", "domains")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

TagSpec = Mapping[str, str] | str | None
DomainSpec = Sequence[str] | Mapping[str, float] | str | np.ndarray


class InputError(ValueError):
    """A tag, domain, image or file the model cannot take; the message lists what it can."""


# -- metadata ------------------------------------------------------------------------
@dataclass(frozen=True)
class TagGroup:
    name: str  # group word as written in text, e.g. "hair"
    tags: tuple[str, ...]  # one-hot order
    aliases: tuple[str, ...] = ()  # other words for the group, e.g. "eye"


@dataclass(frozen=True)
class Meta:
    """The model's metadata_props, parsed."""

    kind: str  # "gan" (inputs z, tags) | "stargan" (inputs image, domains)
    image_size: int
    z_dim: int  # 0 for StarGAN
    tag_groups: tuple[TagGroup, ...]  # () when unconditional or StarGAN
    domains: tuple[str, ...]  # () unless StarGAN
    exclusive: tuple[tuple[str, ...], ...]  # domain sets of which at most one is on
    value_range: tuple[float, float]  # pixel values of inputs and outputs
    step: int
    config_sha256: str
    tagface_version: str
    norm_stats: str  # StarGAN InstanceNorm statistics baked in ("" for GANs)
    precision: str  # weights: "fp32" | "fp16" (inputs and outputs stay float32)
    preprocess: Mapping[str, object] = field(default_factory=dict)  # image inputs (StarGAN)
    props: Mapping[str, str] = field(default_factory=dict, repr=False)  # everything, raw

    @property
    def n_tags(self) -> int:
        return sum(len(g.tags) for g in self.tag_groups)

    @property
    def conditional(self) -> bool:
        return self.n_tags > 0


def parse_metadata(props: Mapping[str, str]) -> Meta:
    """Meta from metadata_props; InputError if this is not a tagface generator."""
    if props.get("kind") not in ("gan", "stargan"):
        raise InputError(f"not a tagface generator: metadata kind is {props.get('kind')!r} "
                         f"(expected 'gan' or 'stargan')")
    try:
        groups = tuple(TagGroup(g["name"], tuple(g["tags"]), tuple(g.get("aliases", ())))
                       for g in json.loads(props.get("tag_groups", "[]")))
        dom = json.loads(props.get("domains", "{}")) or {}
        lo, hi = json.loads(props.get("value_range", "[-1, 1]"))
        return Meta(kind=props["kind"], image_size=int(props["image_size"]),
                    z_dim=int(props.get("z_dim", 0)), tag_groups=groups,
                    domains=tuple(dom.get("names", ())),
                    exclusive=tuple(tuple(g) for g in dom.get("exclusive", ())),
                    value_range=(float(lo), float(hi)), step=int(props.get("step", -1)),
                    config_sha256=props.get("config_sha256", ""),
                    tagface_version=props.get("tagface_version", ""),
                    norm_stats=props.get("norm_stats", ""),
                    precision=props.get("precision", "fp32"),
                    preprocess=json.loads(props.get("preprocess", "{}")) or {},
                    props=dict(props))
    except (KeyError, ValueError, TypeError) as e:
        raise InputError(f"malformed tagface metadata: {type(e).__name__}: {e}") from None


# -- provider choice -----------------------------------------------------------------
def _cuda_driver() -> tuple[bool, str]:
    """Is an NVIDIA driver installed, new enough for this onnxruntime, with a device?"""
    name = "nvcuda.dll" if platform.system() == "Windows" else "libcuda.so.1"
    try:
        cuda = ctypes.CDLL(name)
    except OSError:
        return False, f"no NVIDIA driver: {name} not found"
    if (rc := cuda.cuInit(0)) != 0:
        return False, f"NVIDIA driver present but cuInit failed (CUresult {rc})"
    count, version = ctypes.c_int(0), ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return False, "NVIDIA driver present but no CUDA device visible"
    needed = _ort_cuda_version()
    if needed and cuda.cuDriverGetVersion(ctypes.byref(version)) == 0 \
            and version.value < needed[0] * 1000 + needed[1] * 10:
        return False, (f"driver supports CUDA {version.value // 1000}.{version.value % 1000 // 10}"
                       f", onnxruntime needs {needed[0]}.{needed[1]}")
    return True, f"{count.value} CUDA device(s)"


def _ort_cuda_version() -> tuple[int, int] | None:
    with contextlib.suppress(Exception):
        from onnxruntime.capi import build_and_package_info as info

        major, minor = str(info.cuda_version).split(".")[:2]
        return int(major), int(minor)
    return None


def _cuda_libraries() -> tuple[bool, str]:
    """Do the CUDA provider library, its CUDA libraries (cuBLASLt, cudart...) and cuDNN load?"""
    capi = Path(ort.__file__).parent / "capi"
    windows = platform.system() == "Windows"
    libs = [str(capi / ("onnxruntime_providers_cuda.dll" if windows
                        else "libonnxruntime_providers_cuda.so")),
            "cudnn64_9.dll" if windows else "libcudnn.so.9"]

    def first_missing() -> str | None:
        for lib in libs:
            try:
                ctypes.CDLL(lib)
            except OSError as e:
                return str(e)
        return None

    if first_missing() and hasattr(ort, "preload_dlls"):
        # CUDA from the nvidia-* pip packages: let onnxruntime load them (it prints on failure).
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
            ort.preload_dlls()
    missing = first_missing()
    return (False, f"CUDA libraries not loadable: {missing}") if missing else (True, "")


def cuda_status() -> tuple[bool, str]:
    """(usable, reason): whether CUDAExecutionProvider can really run here, and why (not)."""
    if CUDA not in ort.get_available_providers():
        return False, "this onnxruntime has no CUDA provider"
    ok, why = _cuda_driver()
    if not ok:
        return False, why
    libs_ok, libs_why = _cuda_libraries()
    return (True, why) if libs_ok else (False, libs_why)


def choose_providers(device: str = "auto") -> tuple[list[str], str]:
    """Providers for ``device`` ("auto" | "cpu" | "cuda") and the reason for the choice."""
    if device == "cpu":
        return [CPU], "CPU requested"
    if device not in ("auto", "cuda"):
        raise InputError(f"device={device!r}: expected auto, cpu or cuda")
    ok, why = cuda_status()
    if ok:
        return [CUDA, CPU], why
    if device == "cuda":
        raise InputError(f"device='cuda' but CUDA is not usable here: {why}")
    return [CPU], why


def make_session(path: str | Path, providers: Sequence[str]) -> ort.InferenceSession:
    """An InferenceSession that logs errors only (no warnings about node placement)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=list(providers))


# -- images --------------------------------------------------------------------------
def to_uint8(x: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Model output float [B, 3, S, S] -> uint8 [B, S, S, 3]."""
    lo, hi = value_range
    y = (np.asarray(x, dtype=np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def from_uint8(images: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """uint8 [B, S, S, 3] -> model input float32 [B, 3, S, S] (x / 127.5 - 1 for [-1, 1])."""
    lo, hi = value_range
    x = images.astype(np.float32).transpose(0, 3, 1, 2) * ((hi - lo) / 255.0) + lo
    return np.ascontiguousarray(x)


def as_rgb_batch(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """uint8 HW / HWC (1, 3 or 4 channels) or NHWC -> uint8 [N, H, W, 3], and whether single.

    Transparency is composited onto white, as training data is.
    """
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise InputError(f"expected a uint8 image, got {a.dtype}")
    single = a.ndim in (2, 3)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        raise InputError(f"expected an image [H, W], [H, W, C] or [N, H, W, C] with C in "
                         f"1, 3, 4; got shape {list(np.shape(image))}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    elif a.shape[-1] == 4:
        alpha = a[..., 3:].astype(np.float32) / 255.0
        a = np.rint(a[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return a, single


def slerp(a: np.ndarray, b: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` noise vectors [frames, D] from ``a`` to ``b`` (both [D] or [1, D]) along
    the great circle between them, the usual latent walk for Gaussian noise: a straight
    line would pass through vectors of atypically small norm. Ends are ``a`` and ``b``."""
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    t = np.linspace(0.0, 1.0, frames)[:, None]
    cos = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(omega) < 1e-6:  # (anti)parallel: the circle is not defined, walk straight
        out = (1 - t) * a + t * b
    else:
        out = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
    out[0], out[-1] = a, b
    return out.astype(np.float32)


# -- the model -----------------------------------------------------------------------
class Model:
    """One exported generator: an ORT session, its metadata, and name-based input encoding."""

    def __init__(self, path: str | Path, session: ort.InferenceSession, reason: str = ""):
        self.path = Path(path)
        self.session = session
        props = session.get_modelmeta().custom_metadata_map
        self.meta = parse_metadata(props)
        self.provider: str = session.get_providers()[0]
        self.provider_reason = reason  # why this provider (e.g. "no NVIDIA driver ...")
        self.input_types = {i.name: np.float16 if i.type == "tensor(float16)" else np.float32
                            for i in session.get_inputs()}
        expected = (STARGAN_INPUTS if self.meta.kind == "stargan"
                    else GAN_INPUTS if self.meta.conditional else GAN_INPUTS[:1])
        if tuple(self.input_types) != expected:
            raise InputError(f"{self.path.name}: inputs {list(self.input_types)} do not match a "
                             f"{self.meta.kind} model's {list(expected)}")
        self.output_name = session.get_outputs()[0].name

    def __repr__(self) -> str:
        return f"Model({self.path.name!r}, {self.summary()})"

    def summary(self) -> str:
        """One line: what the model takes and where it runs."""
        m = self.meta
        if m.kind == "stargan":
            what = f"StarGAN {m.image_size}px, domains {', '.join(m.domains)}"
        else:
            groups = " + ".join(f"{g.name} ({len(g.tags)})" for g in m.tag_groups)
            what = f"GAN {m.image_size}px, z {m.z_dim}" + (f", tags {groups}" if groups else "")
        where = self.provider + (f" ({self.provider_reason})" if self.provider_reason else "")
        return f"{what}, step {m.step}, on {where}"

    # -- raw -----------------------------------------------------------------------
    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """Run the graph on named float inputs; float32 output [B, 3, S, S] in value_range."""
        cast = {k: np.ascontiguousarray(v, dtype=self.input_types[k]) for k, v in feeds.items()}
        return self.session.run([self.output_name], cast)[0].astype(np.float32, copy=False)

    # -- tags ----------------------------------------------------------------------
    def valid_tags(self) -> str:
        return "; ".join(f"{g.name}: {', '.join(g.tags)}" for g in self.meta.tag_groups)

    def _group(self, word: str) -> TagGroup | None:
        w = word.lower()
        return next((g for g in self.meta.tag_groups
                     if w == g.name.lower() or w in (a.lower() for a in g.aliases)), None)

    def _tag(self, group: TagGroup, value: str) -> str:
        v = value.strip().lower()
        if v == RANDOM:
            return RANDOM
        for t in group.tags:
            if t.lower() == v:
                return t
        raise InputError(f"unknown {group.name} tag {value!r}; valid {group.name} tags are "
                         f"{', '.join(group.tags)} (or {RANDOM})")

    def parse_tags(self, text: str) -> dict[str, str]:
        """``"blue hair red eyes"`` -> {"hair": "blue", "eyes": "red"}; ``"random"`` -> all random."""
        if text.strip().lower() == RANDOM:
            return {g.name: RANDOM for g in self.meta.tag_groups}
        found: dict[str, str] = {}
        pending: list[str] = []
        for w in re.findall(r"[a-z0-9]+", text.lower()):
            group = self._group(w)
            if group is None:
                pending.append(w)
                continue
            if not pending:
                raise InputError(f"{w!r} in {text!r} has no tag before it; valid tags are "
                                 f"{self.valid_tags()}")
            if group.name in found:
                raise InputError(f"{text!r} gives {group.name} twice")
            found[group.name] = self._tag(group, " ".join(pending))
            pending = []
        if pending:
            raise InputError(f"unknown word(s) {' '.join(pending)!r} in {text!r}; write tags as "
                             f"'<tag> <group>', valid tags are {self.valid_tags()}")
        return self._complete(found, text)

    def _complete(self, found: Mapping[str, str], given: object) -> dict[str, str]:
        missing = [g.name for g in self.meta.tag_groups if g.name not in found]
        if missing:
            raise InputError(f"{given!r} gives no {' or '.join(missing)} tag (use {RANDOM!r} for "
                             f"any); valid tags are {self.valid_tags()}")
        return {g.name: found[g.name] for g in self.meta.tag_groups}

    def _choice(self, tags: TagSpec) -> dict[str, str]:
        if not self.meta.conditional:
            raise InputError(f"{self.path.name} is not tag-conditioned: it takes no tags")
        if tags is None:
            return {g.name: RANDOM for g in self.meta.tag_groups}
        if isinstance(tags, str):
            return self.parse_tags(tags)
        found: dict[str, str] = {}
        for key, value in tags.items():
            group = self._group(key)
            if group is None:
                raise InputError(f"unknown tag group {key!r}; groups are "
                                 f"{', '.join(g.name for g in self.meta.tag_groups)}")
            found[group.name] = self._tag(group, value)
        return self._complete(found, dict(tags))

    def encode_tags(self, tags: TagSpec, n: int | None = None,
                    seed: int | np.random.Generator | None = None) -> np.ndarray:
        """Concatenated one-hot float32 [n_tags] (or [n, n_tags] if ``n``).

        ``tags``: {"hair": "blue", "eyes": "red"}, text "blue hair red eyes", with
        "random" for any group (drawn per row from ``seed``); None = all random.
        """
        choice = self._choice(tags)
        rng = np.random.default_rng(seed)
        rows = 1 if n is None else n
        out = np.zeros((rows, self.meta.n_tags), dtype=np.float32)
        offset = 0
        for g in self.meta.tag_groups:
            if choice[g.name] == RANDOM:
                idx = rng.integers(len(g.tags), size=rows)
            else:
                idx = np.full(rows, g.tags.index(choice[g.name]))
            out[np.arange(rows), offset + idx] = 1.0
            offset += len(g.tags)
        return out[0] if n is None else out

    def decode_tags(self, vector: np.ndarray) -> dict[str, str]:
        """The arg-max tag of each group of a [n_tags] vector."""
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.meta.n_tags:
            raise InputError(f"tag vector has length {v.shape[0]}, expected {self.meta.n_tags}")
        out, offset = {}, 0
        for g in self.meta.tag_groups:
            out[g.name] = g.tags[int(np.argmax(v[offset:offset + len(g.tags)]))]
            offset += len(g.tags)
        return out

    def sample_z(self, n: int, seed: int | np.random.Generator | None = None,
                 psi: float = 1.0) -> np.ndarray:
        """Standard-normal noise float32 [n, z_dim], as in training, truncated at ``psi``.

        ``psi`` in (0, 1]: the truncation trick of trainer.noise (1 = off; the noise is
        then exactly ``default_rng(seed).standard_normal``, as before truncation existed).
        """
        try:
            return noise.sample_z(n, self.meta.z_dim, np.random.default_rng(seed), psi)
        except ValueError as e:
            raise InputError(str(e)) from None

    def generate(self, tags: TagSpec | Sequence[TagSpec] | np.ndarray = None,
                 z: np.ndarray | None = None, seed: int | None = None, n: int = 1,
                 psi: float = 1.0) -> np.ndarray:
        """uint8 images [n, S, S, 3] of ``tags`` (GAN models).

        ``tags``: one spec for every image (see encode_tags), a list with one spec per
        image, or a one-hot array [n_tags] / [n, n_tags]. ``z`` [n, z_dim] fixes the
        noise; otherwise it is drawn from ``seed`` (before any random tags, so the
        same seed gives the same noise whatever the tags), truncated at ``psi``
        (sample_z; 1 = off).
        """
        m = self.meta
        if m.kind != "gan":
            raise InputError(f"{self.path.name} is a StarGAN model: use translate()")
        rng = np.random.default_rng(seed)
        batched = isinstance(tags, (list, tuple)) or (isinstance(tags, np.ndarray)
                                                      and tags.ndim == 2)
        if z is not None:
            z = np.asarray(z, dtype=np.float32).reshape(-1, m.z_dim)
        else:
            z = self.sample_z(len(tags) if batched else n, rng, psi)  # type: ignore[arg-type]
        feeds = {"z": z}
        if m.conditional:
            feeds["tags"] = self._tag_batch(tags, len(z), rng)
        elif tags is not None:
            raise InputError(f"{self.path.name} is not tag-conditioned: it takes no tags")
        return to_uint8(self.run(feeds), m.value_range)

    def _tag_batch(self, tags: object, n: int, rng: np.random.Generator) -> np.ndarray:
        if isinstance(tags, np.ndarray):
            t = np.asarray(tags, dtype=np.float32).reshape(-1, tags.shape[-1])
            if t.shape[1] != self.meta.n_tags:
                raise InputError(f"tag vector has length {t.shape[1]}, expected "
                                 f"{self.meta.n_tags} ({self.valid_tags()})")
        elif isinstance(tags, (list, tuple)):
            t = np.stack([self.encode_tags(s, seed=rng) for s in tags])
        else:
            t = self.encode_tags(tags, n=n, seed=rng)  # type: ignore[arg-type]
        if len(t) == 1 and n > 1:
            t = np.repeat(t, n, axis=0)
        if len(t) != n:
            raise InputError(f"{len(t)} tag vectors for {n} noise vectors")
        return t

    # -- domains -------------------------------------------------------------------
    def _domain(self, name: str) -> int:
        names = self.meta.domains
        for i, d in enumerate(names):
            if d == name or d.lower() == name.strip().lower():
                return i
        raise InputError(f"unknown domain {name!r}; this model's domains are {', '.join(names)}")

    def encode_domains(self, targets: DomainSpec, source: DomainSpec | None = None) -> np.ndarray:
        """Domain vector float32 [n_domains]: ``source`` with ``targets`` applied.

        ``targets``: names to switch on (a list, or "A,B" text), or {name: 0/1};
        switching on a member of an exclusive set (hair colours) switches its
        siblings off. ``source``: the input image's attributes (names or a vector);
        None starts from all off.
        """
        if self.meta.kind != "stargan":
            raise InputError(f"{self.path.name} is not a StarGAN model: it takes no domains")
        n = len(self.meta.domains)
        if source is None:
            v = np.zeros(n, dtype=np.float32)
        elif isinstance(source, np.ndarray):
            v = source.astype(np.float32).reshape(-1).copy()
            if v.shape[0] != n:
                raise InputError(f"domain vector has length {v.shape[0]}, expected {n} "
                                 f"({', '.join(self.meta.domains)})")
        else:
            v = self.encode_domains(source)
        if isinstance(targets, np.ndarray):
            return self.encode_domains([], targets)
        if isinstance(targets, str):
            targets = [t for t in re.split(r"[,\s]+", targets) if t]
        items = targets.items() if isinstance(targets, Mapping) else ((t, 1.0) for t in targets)
        for name, on in items:
            i = self._domain(name)
            if on:
                for group in self.meta.exclusive:
                    if self.meta.domains[i] in group:
                        for sibling in group:
                            v[self._domain(sibling)] = 0.0
            v[i] = 1.0 if on else 0.0
        return v

    def translate(self, image: np.ndarray, target_domains: DomainSpec,
                  source: DomainSpec | None = None) -> np.ndarray:
        """Translate uint8 image(s) [S, S, C] / [N, S, S, C] to ``target_domains``; uint8 out.

        ``target_domains``: see encode_domains, or an array [K, n_domains] to render one
        image in K ways. Grayscale and RGBA inputs are converted; the size must be the
        model's (resize and crop first, as training did).
        """
        m = self.meta
        if m.kind != "stargan":
            raise InputError(f"{self.path.name} is not a StarGAN model: use generate()")
        rgb, single = as_rgb_batch(image)
        if rgb.shape[1:3] != (m.image_size, m.image_size):
            raise InputError(f"image is {rgb.shape[2]}x{rgb.shape[1]}; this model takes "
                             f"{m.image_size}x{m.image_size} (centre-crop and resize first)")
        if isinstance(target_domains, np.ndarray) and target_domains.ndim == 2:
            d = np.stack([self.encode_domains(t) for t in target_domains])
        else:
            d = self.encode_domains(target_domains, source)[None]
        if len(d) > 1 and len(rgb) == 1:
            rgb, single = np.repeat(rgb, len(d), axis=0), False
        if len(d) == 1:
            d = np.repeat(d, len(rgb), axis=0)
        if len(d) != len(rgb):
            raise InputError(f"{len(d)} domain vectors for {len(rgb)} images")
        out = to_uint8(self.run({"image": from_uint8(rgb, m.value_range), "domains": d}),
                       m.value_range)
        return out[0] if single else out


def load_model(path: str | Path, device: str = "auto") -> Model:
    """Open an exported generator. ``device``: "auto" (CUDA if really usable), "cpu", "cuda"."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    providers, reason = choose_providers(device)
    try:
        session = make_session(path, providers)
    except (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidProtobuf) as e:
        raise InputError(f"{path}: not a loadable ONNX model: {e}") from None
    model = Model(path, session, reason)
    log.info("%s: %s", path.name, model.summary())
    return model

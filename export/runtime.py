"""Run an exported tagface generator with ONNX Runtime: numpy and onnxruntime only, no torch.

```python
from export.runtime import load_model
m = load_model("models/cgan_avatars.onnx")     # CUDA if really usable, else CPU
m.provider                                      # "CPUExecutionProvider"
imgs = m.generate("blue hair red eyes", n=4, seed=0)   # uint8 [4, 64, 64, 3]
imgs = m.generate({"hair": "blue", "eyes": "random"}, n=4, seed=0)
imgs = m.generate("blue hair red eyes", n=4, seed=0, psi=0.7)   # truncation trick
s = load_model("models/stargan_avatars.onnx")
out = s.translate(img_uint8_hwc, ["blonde_hair"], source=["black_hair"])  # uint8 [S, S, 3]
```
Everything the model needs (tag groups, z size, image size, domains, value range,
how to prepare an input image) is read from the file's metadata_props, so other
runtimes need no tagface code; here its tags and domains become ``tagvocab`` objects.
Noise comes from ``trainer.noise``; both are numpy only, so this never imports torch.
Provider: CUDA only when export.cuda_probe finds a driver, a device and the libraries.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from export.cuda_probe import cuda_driver as _cuda_driver
from export.cuda_probe import cuda_libraries as _cuda_libraries
from tagvocab import (
    G_CONDITIONS,
    RANDOM,
    Domains,
    DomainSpec,
    TagGroup,
    Vocab,
    VocabError,
    as_vectors,
)
from trainer import noise
from trainer.noise import slerp as slerp  # re-exported: the demo's latent walk

log = logging.getLogger("tagface.runtime")

GAN_INPUTS = ("z", "tags")  # "tags" absent when unconditional
STARGAN_INPUTS = ("image", "domains")  # + "source" when g_condition is "difference"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

TagSpec = Mapping[str, str] | str | None


class InputError(ValueError):
    """A tag, domain, image or file the model cannot take; the message lists what it can."""


@contextlib.contextmanager
def as_input_error() -> Iterator[None]:
    """Turn tagvocab's VocabError into InputError (same message), the runtime's one error."""
    try:
        yield
    except VocabError as e:
        raise InputError(str(e)) from None


# -- metadata ------------------------------------------------------------------------
@dataclass(frozen=True)
class Meta:
    """The model's metadata_props, parsed; tags and domains rebuilt as tagvocab objects."""

    kind: str  # "gan" (inputs z, tags) | "stargan" (inputs image, domains[, source])
    image_size: int
    z_dim: int  # 0 for StarGAN
    tag_vocab: Vocab  # no groups when unconditional or StarGAN
    domain_vocab: Domains  # no names unless StarGAN
    value_range: tuple[float, float]  # pixel values of inputs and outputs
    step: int
    config_sha256: str
    tagface_version: str
    norm_stats: str  # StarGAN InstanceNorm statistics baked in ("" for GANs)
    g_condition: str  # StarGAN: "target" | "difference" (also takes source); "" for GANs
    precision: str  # weights: "fp32" | "fp16" (inputs and outputs stay float32)
    preprocess: Mapping[str, object] = field(default_factory=dict)  # image inputs (StarGAN)
    props: Mapping[str, str] = field(default_factory=dict, repr=False)  # everything, raw

    @property
    def tag_groups(self) -> tuple[TagGroup, ...]:
        """The tag groups in one-hot order; () when unconditional or StarGAN."""
        return self.tag_vocab.groups

    @property
    def domains(self) -> tuple[str, ...]:
        """The StarGAN domain names in vector order; () for GANs."""
        return self.domain_vocab.names

    @property
    def exclusive(self) -> tuple[tuple[str, ...], ...]:
        """Domain sets of which at most one is on (hair colours)."""
        return self.domain_vocab.exclusive

    @property
    def n_tags(self) -> int:
        return self.tag_vocab.n_tags

    @property
    def conditional(self) -> bool:
        return self.n_tags > 0

    @property
    def takes_source(self) -> bool:
        """Whether the graph also takes the input's own domains (g_condition difference)."""
        return self.kind == "stargan" and self.g_condition == "difference"

    @property
    def inputs(self) -> tuple[str, ...]:
        """The graph's input names, in order."""
        if self.kind == "stargan":
            return STARGAN_INPUTS + (("source",) if self.takes_source else ())
        return GAN_INPUTS if self.conditional else GAN_INPUTS[:1]


def parse_metadata(props: Mapping[str, str]) -> Meta:
    """Meta from metadata_props; InputError if this is not a tagface generator."""
    if props.get("kind") not in ("gan", "stargan"):
        raise InputError(f"not a tagface generator: metadata kind is {props.get('kind')!r} "
                         f"(expected 'gan' or 'stargan')")
    if props["kind"] == "stargan" and props.get("g_condition", "target") not in G_CONDITIONS:
        raise InputError(f"unknown g_condition {props['g_condition']!r} in the metadata "
                         f"(expected one of {', '.join(G_CONDITIONS)}): made by a newer tagface?")
    try:
        tags = Vocab.from_dict({"groups": json.loads(props.get("tag_groups", "[]"))})
        dom = json.loads(props.get("domains", "{}")) or {}
        domains = Domains.from_dict({"kind": "domains", "names": dom.get("names", ()),
                                     "exclusive": dom.get("exclusive", ())})
        lo, hi = json.loads(props.get("value_range", "[-1, 1]"))
        return Meta(kind=props["kind"], image_size=int(props["image_size"]),
                    z_dim=int(props.get("z_dim", 0)), tag_vocab=tags, domain_vocab=domains,
                    value_range=(float(lo), float(hi)), step=int(props.get("step", -1)),
                    config_sha256=props.get("config_sha256", ""),
                    tagface_version=props.get("tagface_version", ""),
                    norm_stats=props.get("norm_stats", ""),
                    g_condition=props.get("g_condition",
                                          "target" if props["kind"] == "stargan" else ""),
                    precision=props.get("precision", "fp32"),
                    preprocess=json.loads(props.get("preprocess", "{}")) or {},
                    props=dict(props))
    except (KeyError, ValueError, TypeError) as e:
        raise InputError(f"malformed tagface metadata: {type(e).__name__}: {e}") from None


# -- provider choice -----------------------------------------------------------------
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
        expected = self.meta.inputs
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
            what = (f"StarGAN {m.image_size}px, domains {', '.join(m.domains)}"
                    + (", told target minus source" if m.takes_source else ""))
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
        """Every tag group and its tags, as error messages list them."""
        return self.meta.tag_vocab.valid_tags()

    def parse_tags(self, text: str) -> dict[str, str]:
        """``"blue hair red eyes"`` -> {"hair": "blue", "eyes": "red"}; ``"random"``: all random."""
        with as_input_error():
            return self.meta.tag_vocab.parse(text, random=RANDOM)

    def choose_tags(self, tags: TagSpec, *, lenient: bool = False) -> dict[str, str]:
        """{group: tag or "random"} for every group, from text, a mapping or None (all random).

        ``lenient`` (the demo's dropdowns): groups not given are random and keys of
        groups this model lacks are ignored; otherwise both raise InputError.
        """
        if not self.meta.conditional:
            raise InputError(f"{self.path.name} is not tag-conditioned: it takes no tags")
        vocab = self.meta.tag_vocab
        if tags is None:
            return dict.fromkeys(vocab.group_names, RANDOM)
        if isinstance(tags, str):
            return self.parse_tags(tags)
        with as_input_error():
            return vocab.resolve(tags, random=RANDOM, default=RANDOM if lenient else None,
                                 ignore_unknown=lenient)

    def encode_tags(self, tags: TagSpec, n: int | None = None,
                    seed: int | np.random.Generator | None = None) -> np.ndarray:
        """Concatenated one-hot float32 [n_tags] (or [n, n_tags] if ``n``).

        ``tags``: {"hair": "blue", "eyes": "red"}, text "blue hair red eyes", with
        "random" for any group (drawn per row from ``seed``); None = all random.
        """
        vocab = self.meta.tag_vocab
        choice = self.choose_tags(tags)
        rng = np.random.default_rng(seed)
        out = vocab.encode_indices(vocab.draw_indices(choice, 1 if n is None else n, rng))
        return out[0] if n is None else out

    def decode_tags(self, vector: np.ndarray) -> dict[str, str]:
        """The arg-max tag of each group of a [n_tags] vector."""
        with as_input_error():
            return self.meta.tag_vocab.decode(vector)

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
    def encode_domains(self, targets: DomainSpec, source: DomainSpec | None = None) -> np.ndarray:
        """Domain vector float32 [n_domains]: ``source`` with ``targets`` applied.

        ``targets``: names to switch on (a list, or "A,B" text), or {name: 0/1};
        switching on a member of an exclusive set (hair colours) switches its
        siblings off (tagvocab ``Domains.apply``), or a vector (an array, or a list of
        numbers, taken as it is). ``source``: the input image's attributes (names or a
        vector); None starts from all off.
        """
        if self.meta.kind != "stargan":
            raise InputError(f"{self.path.name} is not a StarGAN model: it takes no domains")
        with as_input_error():
            return self.meta.domain_vocab.vector(targets, source)

    def translate(self, image: np.ndarray, target_domains: DomainSpec,
                  source: DomainSpec | None = None) -> np.ndarray:
        """Translate uint8 image(s) [S, S, C] / [N, S, S, C] to ``target_domains``; uint8 out.

        ``target_domains``: see encode_domains, or an array [K, n_domains] (or K lists of
        numbers) to render one image in K ways. ``source``: the input's own domains (names,
        a vector, or an array [N, n_domains] with one row per image; None = none). Named
        targets are applied to it (the attributes they leave alone keep its values; array
        targets are used as given), and a model exported with g_condition difference is
        also given it (its ``source`` input), since it is told the change, target minus
        source. Grayscale and RGBA inputs are converted; the size must be the model's
        (resize and crop first, as training did).
        """
        m = self.meta
        if m.kind != "stargan":
            raise InputError(f"{self.path.name} is not a StarGAN model: use generate()")
        rgb, single = as_rgb_batch(image)
        if rgb.shape[1:3] != (m.image_size, m.image_size):
            raise InputError(f"image is {rgb.shape[2]}x{rgb.shape[1]}; this model takes "
                             f"{m.image_size}x{m.image_size} (centre-crop and resize first)")
        with as_input_error():
            target_domains = as_vectors(target_domains)  # K vectors may come as nested lists
        own = self._source_rows(source)  # [1 or N, n_domains]
        if isinstance(target_domains, np.ndarray) and target_domains.ndim == 2:
            d = np.stack([self.encode_domains(t) for t in target_domains])
        else:
            d = np.stack([self.encode_domains(target_domains, row) for row in own])
        if len(d) > 1 and len(rgb) == 1:
            rgb, single = np.repeat(rgb, len(d), axis=0), False
        if len(d) == 1:
            d = np.repeat(d, len(rgb), axis=0)
        if len(d) != len(rgb):
            raise InputError(f"{len(d)} domain vectors for {len(rgb)} images")
        feeds = {"image": from_uint8(rgb, m.value_range), "domains": d}
        if m.takes_source:
            if len(own) not in (1, len(d)):
                raise InputError(f"{len(own)} source vectors for {len(d)} images")
            feeds["source"] = np.repeat(own, len(d), axis=0) if len(own) == 1 else own
        out = to_uint8(self.run(feeds), m.value_range)
        return out[0] if single else out

    def _source_rows(self, source: DomainSpec | np.ndarray | None) -> np.ndarray:
        """The input's own domains as float32 [1 or N, n_domains] (see translate)."""
        with as_input_error():
            source = as_vectors(source)  # a vector (or one per image) written as a list
            if isinstance(source, np.ndarray) and source.ndim == 2:
                return self.meta.domain_vocab.check_vector(source)
        return self.encode_domains([], source)[None]


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

"""Can ONNX Runtime's CUDA provider really run here? Asked with ctypes, not with ONNX Runtime.

Asking ONNX Runtime for CUDAExecutionProvider where it cannot work prints error lines
and falls back silently; these probes load the driver and the libraries themselves and
say in one line why CUDA is or is not usable. ``export.runtime.cuda_status`` combines
them (numpy, onnxruntime and the standard library only: no torch).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import platform
from pathlib import Path

import onnxruntime as ort


def cuda_driver() -> tuple[bool, str]:
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
    needed = ort_cuda_version()
    if needed and cuda.cuDriverGetVersion(ctypes.byref(version)) == 0 \
            and version.value < needed[0] * 1000 + needed[1] * 10:
        return False, (f"driver supports CUDA {version.value // 1000}.{version.value % 1000 // 10}"
                       f", onnxruntime needs {needed[0]}.{needed[1]}")
    return True, f"{count.value} CUDA device(s)"


def ort_cuda_version() -> tuple[int, int] | None:
    """(major, minor) of the CUDA this onnxruntime was built for; None if it does not say."""
    with contextlib.suppress(Exception):
        from onnxruntime.capi import build_and_package_info as info

        major, minor = str(info.cuda_version).split(".")[:2]
        return int(major), int(minor)
    return None


def cuda_libraries() -> tuple[bool, str]:
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

"""make cuda-check: the CUDA build of facecore loads and every op has a CUDA kernel.

Runs without a GPU: it loads the CUDA-enabled library built by `make cuda-check`
into a CUDA build of torch, and asks the dispatcher, for every operator in the
facecore namespace, whether CPU, CUDA and Autograd kernels and a fake kernel are
registered. It also checks that the library holds machine code for each
requested architecture (cuobjdump).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys

import torch

import facecore
from facecore import extension

# Metadata ops with no tensor arguments: device independent by design.
DEVICE_FREE = {"facecore::_op_version", "facecore::_cuda_version", "facecore::_build_torch_version"}


def find_cuobjdump() -> str | None:
    """cuobjdump from PATH, the toolkit, or the copy the triton wheel ships."""
    candidates = [
        shutil.which("cuobjdump"),
        os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "cuobjdump"),
    ]
    try:
        import triton

        candidates.append(
            os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
        )
    except ImportError:
        pass
    return next((c for c in candidates if c and os.path.exists(c)), None)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archs", default="8.0;9.0")
    args = parser.parse_args()

    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), facecore at {facecore.__file__}")
    print(f"library: {extension.library_path()}")
    failures: list[str] = []
    if torch.version.cuda is None:
        failures.append("torch is not a CUDA build")
    cv = extension.cuda_version()
    print(f"library built with CUDA {cv}")
    if cv is None:
        failures.append("the library was built without its CUDA kernels")

    names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("facecore::"))
    ops = [n for n in names if n not in DEVICE_FREE]
    if not ops:
        failures.append("no facecore ops are registered")
    from torch._library.simple_registry import singleton as registry

    for name in ops:
        row = []
        for key in ("CPU", "CUDA", "Autograd"):
            ok = torch._C._dispatch_has_kernel_for_dispatch_key(name, key)
            row.append(f"{key}={'yes' if ok else 'NO'}")
            if not ok:
                failures.append(f"{name} has no {key} kernel")
        fake = registry.find(name).fake_impl.kernel is not None
        row.append(f"fake={'yes' if fake else 'NO'}")
        if not fake:
            failures.append(f"{name} has no fake kernel")
        print(f"  {name:45s} " + " ".join(row))

    if cuobjdump := find_cuobjdump():
        out = subprocess.run(
            [cuobjdump, "--list-elf", extension.library_path()], capture_output=True, text=True
        ).stdout
        found = sorted(set(re.findall(r"sm_(\d+)", out)))
        print(f"cubins for sm_{', sm_'.join(found) if found else '(none)'}")
        for arch in args.archs.replace(",", ";").split(";"):
            sm = arch.strip().replace(".", "").replace("+PTX", "")
            if sm and sm not in found:
                failures.append(f"no machine code for sm_{sm}")
    else:
        print("cuobjdump not found: architecture check skipped")

    if failures:
        print("cuda-check FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"cuda-check OK: {len(ops)} ops with CPU, CUDA, Autograd and fake kernels")
    return 0


if __name__ == "__main__":
    sys.exit(main())

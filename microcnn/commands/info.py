"""``microcnn info``: versions, the device that ``auto`` would pick, and the optional extras available."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import platform

# distribution name -> what it adds
CORE = (
    "torch",
    "torchvision",
    "numpy",
    "scikit-image",
    "albumentations",
    "h5py",
    "tifffile",
    "safetensors",
    "streamlit",
    "torchmetrics",
    "taufactor",
    "grad-cam",
    "pillow",
)
EXTRAS = {
    "rosettasciio": ("rsciio", "dm", "DM3/DM4 files (Gatan Digital Micrograph)"),
    "segmentation-models-pytorch": ("segmentation_models_pytorch", "bench", "peer library in benchmarks"),
    "playwright": ("playwright", "dev", "real-browser tests"),
}


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def auto_device() -> str:
    """The device ``device: auto`` resolves to here (the engine's one device decision), with details."""
    import torch

    from microcnn.engine.device import select_device

    device = select_device("auto")
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)}, {torch.cuda.device_count()} GPU(s))"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


def collect() -> dict[str, object]:
    from microcnn import __version__

    extras = {}
    for dist, (module, extra, what) in EXTRAS.items():
        found = importlib.util.find_spec(module) is not None
        extras[dist] = {"available": found, "extra": extra, "for": what, "version": _version(dist)}
    return {
        "microcnn": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {dist: _version(dist) for dist in CORE},
        "auto_device": auto_device(),
        "extras": extras,
    }


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        import json

        print(json.dumps(info, indent=2))
        return 0
    print(f"microcnn {info['microcnn']} on Python {info['python']} ({info['platform']})")
    print(f"device 'auto' -> {info['auto_device']}")
    print("libraries:")
    for dist, version in info["versions"].items():
        print(f"  {dist:<16} {version}")
    print("optional extras:")
    for dist, e in info["extras"].items():
        state = e["version"] if e["available"] else f"missing: pip install 'microcnn[{e['extra']}]'"
        print(f"  {dist:<28} {e['for']:<42} {state}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, the device 'auto' picks, optional extras", description=__doc__)
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run)

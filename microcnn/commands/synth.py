"""``microcnn synth``: write labelled synthetic micrographs as a dataset folder or an HDF5 archive.

Six morphology classes (equiaxed_grains, lamellar, spheroidal_particles, widmanstatten, porous, dual_phase)
rendered like SEM images, with exact phase masks and physics labels (phase fraction, mean equivalent
diameter in µm, and for porous samples porosity, tortuosity and D_eff/D_0 from TauFactor). The same
--seed gives byte-identical output.

Examples:
  microcnn synth --task classification --n 600 --size 128 --seed 0 --out data/cls
  microcnn synth --task segmentation --n 100 --size 256 --seed 1 --out seg.h5
  microcnn synth --task regression --n 200 --size 128 --seed 2 --properties porosity,tortuosity,deff_ratio \\
      --out data/reg
"""

from __future__ import annotations

import argparse
import sys

TASK_CHOICES = ("classification", "segmentation", "regression")


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _provenance(args: argparse.Namespace, kinds, properties, info_rows: int) -> dict:
    """How the output was made (synth.json / the archive's ``extra``); the default device is left out."""
    from microcnn import __version__

    return {
        "generator": f"microcnn {__version__} synth",
        "task": args.task,
        "n": args.n,
        "size": args.size,
        "seed": args.seed,
        "kinds": list(kinds),
        "properties": list(properties) if properties else None,
        "pixel_size_um": args.pixel_size,
        "info_bar_rows": info_rows,
        **({"device": args.device} if args.device != "cpu" else {}),
    }


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from microcnn.synth.dataset import make_dataset, resolve_choices
    from microcnn.synth.properties import TransportNotConverged, solver_device
    from microcnn.synth.writer import write_dataset

    try:
        kinds, properties = resolve_choices(args.task, _split(args.kinds), _split(args.properties))
        solver_device(args.device)
    except ValueError as exc:  # unknown class / property name, no CUDA: the message, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info_rows = 20 if args.info_bar else 0
    provenance = _provenance(args, kinds, properties, info_rows)
    with tqdm(total=args.n, unit="img", desc="synth") as bar:
        samples = make_dataset(
            args.task,
            n=args.n,
            size=args.size,
            seed=args.seed,
            kinds=kinds,
            properties=properties,
            pixel_size_um=args.pixel_size,
            info_bar_rows=info_rows,
            device=args.device,
            progress=lambda done, total: bar.update(done - bar.n),
        )
        try:
            summary = write_dataset(
                samples, args.out, task=args.task, targets=properties, provenance=provenance
            )
        except TransportNotConverged as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    skipped = summary["skipped"]
    note = f"; skipped {len(skipped)} non-percolating (tortuosity = inf)" if skipped else ""
    print(f"wrote {summary['written']} {args.task} samples to {args.out}{note}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number (µm per pixel), got {text}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="generate labelled synthetic micrographs (folder or HDF5)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", choices=TASK_CHOICES, default="classification", help="dataset layout to write")
    p.add_argument("--n", type=_positive_int, default=60, help="number of samples (default 60)")
    p.add_argument("--size", type=_positive_int, default=256, help="image rows = cols in px (default 256)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed; same seed -> identical output")
    p.add_argument("--out", required=True, help="new/empty folder, or a path ending in .h5 for an archive")
    p.add_argument("--kinds", help="comma list of classes (default: all six; regression: porous)")
    p.add_argument(
        "--properties",
        help="comma list of labels: phase_fraction, mean_diameter_um, n_objects, porosity, tortuosity, "
        "deff_ratio, percolates (regression targets; default porosity,tortuosity,deff_ratio)",
    )
    p.add_argument("--pixel-size", type=_positive_float, default=0.05, help="µm per pixel (default 0.05)")
    p.add_argument("--info-bar", action="store_true", help="draw an SEM data bar with a scale bar (mask 255)")
    p.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="TauFactor device for tortuosity / D_eff: cpu (default; bit-identical output on every machine), "
        "cuda (error without CUDA) or auto (cuda when available; tau agrees with cpu to ~1e-3)",
    )
    p.set_defaults(func=run)

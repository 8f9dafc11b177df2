"""``microcnn demo``: the main job on the embedded data and default models, end to end.

Runs the three default models of ``data/models`` over the synthetic micrographs of ``data/samples`` (made by
``microcnn synth``, so their true masks, classes and properties are known) and scores each against that
truth: the phase segmenter (mask and overlay PNGs, phase fractions, particle sizes in µm), the morphology
classifier (accuracy) and the property regressor (mean absolute error per property). Outputs go to
``--out`` (default ``runs/demo``); a summary is printed and saved as ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MODELS = {
    "segmentation": "phase_segmenter",
    "classification": "morphology_classifier",
    "regression": "property_regressor",
}


def _progress(desc: str) -> tuple[Callable[[int, int], None], Any]:
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="img")

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar


def _predict(model: Path, files: list[Path], out: Path, desc: str) -> list[dict[str, Any]]:
    from microcnn.inference.files import predict_files
    from microcnn.inference.predictor import Predictor

    predictor = Predictor.from_checkpoint(model, device="cpu")
    update, bar = _progress(desc)
    try:
        return predict_files(predictor, files, out, progress=update)
    finally:
        bar.close()


def _segmentation(samples: Path, model: Path, out: Path) -> dict[str, Any]:
    """IoU of class 1 and phase-fraction error of the written masks against the true masks; sizes in µm."""
    import numpy as np
    from PIL import Image

    from microcnn.analysis.report import quantify
    from microcnn.analysis.results import SegmentationResult

    files = sorted((samples / "images").glob("*.png"))
    _predict(model, files, out, "segmentation")
    ious, errors, diameters = [], [], []
    pixel_size = json.loads((samples / "dataset.json").read_text())["pixel_size_um"]
    for path in files:
        pred = np.asarray(Image.open(out / f"{path.stem}_mask.png"))
        truth = np.asarray(Image.open(samples / "masks" / path.name))[: pred.shape[0]]  # info bar cut off
        valid = truth != 255
        t, p = (truth == 1) & valid, (pred == 1) & valid
        ious.append(float((t & p).sum() / max(1, (t | p).sum())))
        errors.append(float(abs(p.sum() - t.sum()) / max(1, valid.sum())))
        result = SegmentationResult(
            mask=pred, class_names=["matrix", "second_phase"], pixel_size_um=pixel_size
        )
        size = quantify(result, particle_class=1, n_boot=200, rng=0).size
        if size and size.get("n"):
            diameters.append(float(size["mean"]))
    return {
        "images": len(files),
        "mean_iou_second_phase": float(np.mean(ious)),
        "mean_abs_phase_fraction_error": float(np.mean(errors)),
        "mean_particle_diameter_um": float(np.mean(diameters)) if diameters else None,
    }


def _classification(samples: Path, model: Path, out: Path) -> dict[str, Any]:
    import csv

    with (samples / "samples.csv").open(encoding="utf-8") as fh:
        truth = {row["file"]: row["kind"] for row in csv.DictReader(fh)}
    files = [samples / name for name in sorted(truth)]
    rows = _predict(model, files, out, "classification")
    hits = [row.get("predicted") == truth[str(Path(row["file"]).relative_to(samples))] for row in rows]
    return {"images": len(files), "accuracy": sum(hits) / len(hits)}


def _regression(samples: Path, model: Path, out: Path) -> dict[str, Any]:
    import csv

    with (samples / "targets.csv").open(encoding="utf-8") as fh:
        truth = {row.pop("file"): {k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)}
    files = [samples / name for name in sorted(truth)]
    rows = _predict(model, files, out, "regression")
    mae: dict[str, float] = {}
    for name in next(iter(truth.values())):
        column = next((c for c in rows[0] if c.startswith(f"{name} [")), None)
        if column is None:
            continue
        diffs = [abs(float(r[column]) - truth[str(Path(r["file"]).relative_to(samples))][name]) for r in rows]
        mae[name] = sum(diffs) / len(diffs)
    return {"images": len(files), "mean_abs_error": mae}


JOBS = {"segmentation": _segmentation, "classification": _classification, "regression": _regression}


def run(args: argparse.Namespace) -> int:
    from microcnn.errors import MicrocnnError

    out = Path(args.out)
    inputs = {
        task: (Path(args.samples) / task, Path(args.models) / f"{MODELS[task]}.safetensors") for task in JOBS
    }
    missing = [str(p) for samples, model in inputs.values() for p in (samples, model) if not p.exists()]
    if missing:  # checked before any work starts
        raise MicrocnnError(
            f"demo needs the embedded samples and default models; missing: {', '.join(missing)}. "
            "Pass --samples/--models, or retrain the default models with `make models`."
        )
    summary: dict[str, Any] = {}
    for task, job in JOBS.items():
        samples, model = inputs[task]
        summary[task] = {"model": str(model), **job(samples, model, out / task)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    _print(summary, out)
    return 0


def _print(summary: dict[str, Any], out: Path) -> None:
    seg, cls, reg = summary["segmentation"], summary["classification"], summary["regression"]
    print("\nmicrocnn demo: default models on the embedded synthetic samples (truth known exactly)")
    iou, err = seg["mean_iou_second_phase"], seg["mean_abs_phase_fraction_error"]
    print(f"  phase segmenter     {seg['images']:>3} images  IoU(second phase) {iou:.3f}"
          f"  |phase-fraction error| {err:.4f}")  # fmt: skip
    if seg["mean_particle_diameter_um"] is not None:
        print(f"                      mean particle diameter {seg['mean_particle_diameter_um']:.3f} µm")
    print(f"  morphology classes  {cls['images']:>3} images  accuracy {cls['accuracy']:.3f}")
    errors = ", ".join(f"{k} {v:.3f}" for k, v in reg["mean_abs_error"].items())
    print(f"  property regressor  {reg['images']:>3} images  mean absolute error: {errors}")
    print(f"results (CSV, mask and overlay PNGs, summary.json) in {out}/")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the default models on the embedded samples", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--samples", default=str(REPO / "data" / "samples"), help="the samples folder")
    p.add_argument("--models", default=str(REPO / "data" / "models"), help="the default models folder")
    p.set_defaults(func=run)

"""Accuracy on real micrographs (../shared/data) and on synthetic data, ours next to the peer.

Sections (each returns a JSON-friendly dict; a missing dataset gives {"skipped": reason}):

- ``nasa``: Super1 (train 10 / val 4 / test 4) and the 5 out-of-distribution images; ``super3`` the same
  with the one-shot training image. Joint IoU as in the dataset's SOURCE.md: smp ``IoU(threshold=0.5)``
  over the 3 one-hot channels jointly = sum TP / (sum TP + sum FP + sum FN) over channels; with one-hot
  argmax predictions every wrong pixel is one FP and one FN, so joint IoU = a / (2 - a) for pixel accuracy
  a (micro over all test pixels).
- ``uhcs``: the DeCost 2019 folds (``decost2019_validation_sets.json``), ours, the peer and multi-Otsu
  (4 levels, each level mapped to the majority true class of the training images).
- ``synthetic``: the default models of data/models on a fresh synthetic set (``microcnn synth`` +
  ``microcnn evaluate``).

Each model is scored by the same code: per-class IoU, mean IoU, pixel accuracy, joint IoU, phase-fraction
error per image (percentage points) and, per non-matrix class, the two-sample KS statistic between the
equivalent-diameter distributions of objects in predicted and true masks (scipy ``ks_2samp``). Every
set is scored twice: plain (key ``test``, ``ood``) and with test-time augmentation, the mean probability
over the 8 flips/rotations (key ``test_tta``, ``ood_tta``; ``microcnn predict --tta`` /
``microcnn evaluate --tta``). The NASA sets also get a scale sweep (key ``test_scales``, ``ood_scales``):
joint and mean IoU with every image resampled by 0.5-2x before prediction (:func:`scale_sweep`), which
shows whether a set's features have the size in px that the model learnt.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.training import BudgetedRun, register_peer, train_budgeted

DATA = Path("../shared/data")
NASA_CONFIG, UHCS_CONFIG = "configs/nasa_super1.yaml", "configs/bench/uhcs.yaml"
NASA_SCALE_SETS = ("test", "ood")  # the sets of the nasa / super3 sections given a scale sweep


def nasa_split(root: Path, column: str) -> dict[str, list[str]]:
    """{role: stems} of benchmark ``column`` (Super1..Super4) of ``splits.csv``."""
    out: dict[str, list[str]] = {}
    with open(root / "splits.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row[column]:
                out.setdefault(row[column], []).append(row["stem"])
    return out


def uhcs_folds(root: Path) -> list[list[str]]:
    """The 6 DeCost 2019 validation folds as image stems (``micrograph75`` -> ``uhcs0075``)."""
    raw = json.loads((root / "splits" / "decost2019_validation_sets.json").read_text())
    return [[f"uhcs{int(n.removeprefix('micrograph')):04d}" for n in raw[k]] for k in sorted(raw, key=int)]


def load_pair(root: Path, stem: str) -> tuple[Any, np.ndarray]:
    """(Micrograph (H, W) gray, (H, W) uint8 true mask) of ``stem``."""
    from PIL import Image

    from microcnn.io.images import read_micrograph

    image = next(p for p in (root / "images").iterdir() if p.stem == stem)
    micrograph = read_micrograph(image, as_gray=True)
    return micrograph, np.asarray(Image.open(root / "masks" / f"{stem}.png"))


def confusion(pred: np.ndarray, true: np.ndarray, k: int) -> np.ndarray:
    """(k, k) int64 confusion matrix, rows = true, cols = predicted; pixels labelled 255 are ignored."""
    keep = true < k
    return np.bincount(true[keep].astype(np.int64) * k + pred[keep], minlength=k * k).reshape(k, k)


def _iou_and_accuracy(cm: np.ndarray) -> tuple[np.ndarray, float]:
    """(per-class IoU, NaN for a class absent from both masks; pixel accuracy) of a confusion matrix."""
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - tp
    return np.where(union > 0, tp / np.maximum(union, 1), np.nan), float(tp.sum() / cm.sum())


def _ks(pred_sizes: list[np.ndarray], true_sizes: list[np.ndarray]) -> float:
    from scipy.stats import ks_2samp

    p, t = np.concatenate(pred_sizes), np.concatenate(true_sizes)
    return float(ks_2samp(p, t).statistic) if len(p) and len(t) else math.nan


def score_masks(
    preds: list[np.ndarray],
    truths: list[np.ndarray],
    *,
    class_names: list[str],
    pixel_sizes: list[float | None],
) -> dict[str, Any]:
    """Scores of predicted vs true (H, W) class-index masks (see the module docstring)."""
    from microcnn.analysis import measure_objects

    k = len(class_names)
    iou, acc = _iou_and_accuracy(sum(confusion(p, t, k) for p, t in zip(preds, truths)))
    frac_err = [
        [100 * abs((p == c).mean() - (t == c).mean()) for c in range(k)] for p, t in zip(preds, truths)
    ]
    sizes: dict[str, Any] = {}
    for c in range(1, k):
        got = [measure_objects(p == c, pixel_size_um=s) for p, s in zip(preds, pixel_sizes)]
        ref = [measure_objects(t == c, pixel_size_um=s) for t, s in zip(truths, pixel_sizes)]
        col = next(n for n in got[0].columns if n.startswith("equivalent_diameter"))
        sizes[class_names[c]] = {
            "ks": _ks([g[col].to_numpy() for g in got], [r[col].to_numpy() for r in ref]),
            "n_pred": int(sum(len(g) for g in got)),
            "n_true": int(sum(len(r) for r in ref)),
        }
    return {
        "n_images": len(preds),
        "iou": {n: float(v) for n, v in zip(class_names, iou)},
        "mean_iou": float(np.nanmean(iou)),
        "pixel_accuracy": float(acc),
        "joint_iou": float(acc / (2 - acc)),
        "fraction_error_pp_mean": float(np.mean(frac_err)),
        "fraction_error_pp_max": float(np.max(frac_err)),
        "fraction_error_pp_per_image": frac_err,
        "size_ks": sizes,
    }


def score_run(
    run: BudgetedRun,
    sets: dict[str, list[tuple[Any, np.ndarray]]],
    class_names: list[str],
    *,
    scales: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Training facts of ``run`` and its scores on each named set of (micrograph, mask) pairs (and the scale
    sweep of the sets named in ``scales``, see :func:`score_weights`)."""
    out: dict[str, Any] = {
        "train_seconds": run.seconds,
        "epochs_cap": run.epochs_cap,
        "max_minutes": run.minutes,
        "epochs_done": run.epochs_done,
        "stopped": run.stopped,
        "best_val": run.best,
        "run_dir": str(run.run_dir),
    }
    if run.weights is None:
        out["error"] = "no model.safetensors was written (budget shorter than one epoch)"
        return out
    return {**out, **score_weights(run.weights, sets, class_names, scales=scales)}


def score_weights(
    weights: Path,
    sets: dict[str, list[tuple[Any, np.ndarray]]],
    class_names: list[str],
    *,
    scales: tuple[str, ...] = (),
) -> dict[str, Any]:
    """{set: scores, set_tta: scores with test-time augmentation} of the model in ``weights``: class-index
    masks of ``microcnn.inference.Predictor`` on the CPU, loaded once per mode (plain, D4 mean); for each
    set named in ``scales`` also ``set_scales``, its :func:`scale_sweep`."""
    from microcnn.inference.predictor import Predictor

    out = {}
    for tta in (False, True):
        predictor = Predictor.from_checkpoint(weights, device="cpu", tta=tta)
        for name, pairs in sets.items():
            preds = [predictor.predict(m).mask for m, _ in pairs]
            out[f"{name}_tta" if tta else name] = score_masks(
                preds,
                [t for _, t in pairs],
                class_names=class_names,
                pixel_sizes=[m.pixel_size_um for m, _ in pairs],
            )
    for name in scales:
        out[f"{name}_scales"] = scale_sweep(weights, sets[name], class_names)
    return out


# Resampling factors of the scale sweep: a factor of 2 either way covers the magnification steps of an SEM.
SCALE_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)


def scale_sweep(
    weights: Path,
    pairs: list[tuple[Any, np.ndarray]],
    class_names: list[str],
    factors: tuple[float, ...] = SCALE_FACTORS,
) -> dict[str, list[float]]:
    """Joint and mean IoU of the set ``pairs`` with every image resampled by each factor f before prediction
    and the class probabilities resampled back to its own grid: ``Predictor(rescale=True)`` (bilinear,
    anti-aliased when shrinking), told that the image's pixel is f training pixels. A set imaged at the
    training scale scores best at f = 1; a set whose features are larger in px than the training images'
    scores best at f < 1. Plain prediction (no TTA)."""
    from dataclasses import replace

    from microcnn.inference.predictor import Predictor

    predictor = Predictor.from_checkpoint(weights, device="cpu", rescale=True)
    predictor.metadata["pixel_size_um"] = 1.0  # the unit of f: the images' own pixel size is not needed
    k = len(class_names)
    out: dict[str, list[float]] = {"factors": [float(f) for f in factors], "joint_iou": [], "mean_iou": []}
    for f in factors:
        cm = sum(confusion(predictor.predict(replace(m, pixel_size_um=f)).mask, t, k) for m, t in pairs)
        iou, acc = _iou_and_accuracy(cm)
        out["joint_iou"].append(acc / (2 - acc))
        out["mean_iou"].append(float(np.nanmean(iou)))
    return out


def _ours_and_peer(
    config: str,
    *,
    split: dict[str, list[str]],
    sets: dict[str, Any],
    minutes: float,
    out_dir: Path,
    tag: str,
    overrides: list[str] | None = None,
    seeds: list[int] | None = None,
    scales: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Ours and the peer trained and scored alike (``scales``: the sets given a scale sweep). With ``seeds``
    each is trained once per seed (run folders ``<tag>-<who>-seed<s>``): "ours" and "peer" hold the first
    seed's runs, "repeats" the others'."""
    from microcnn.config import load_config

    peer = register_peer()
    cfg = load_config(config, overrides=overrides)
    names = list(cfg.data.class_names)
    runs: list[dict[str, Any]] = []
    for seed in seeds or [None]:
        result = {}
        for who, extra in (("ours", []), ("peer", [f"model={{name: {peer}}}"])):
            run_cfg = load_config(cfg, overrides=extra + ([] if seed is None else [f"seed={seed}"]))
            folder = out_dir / (f"{tag}-{who}" if seed is None else f"{tag}-{who}-seed{seed}")
            run = train_budgeted(run_cfg, run_dir=folder, minutes=minutes, split=split)
            scores = score_run(run, sets, names, scales=scales)
            result[who] = {"model": dict(run_cfg.model), "seed": run_cfg.seed, **scores}
        runs.append(result)
    if len(runs) == 1:
        return runs[0]
    return {**runs[0], "repeats": {who: [r[who] for r in runs[1:]] for who in ("ours", "peer")}}


def bench_nasa(
    *,
    minutes: float,
    out_dir: Path,
    benchmark: str = "Super1",
    root: Path = DATA / "nasa_super",
    overrides: list[str] | None = None,
    seeds: list[int] | None = None,
) -> dict[str, Any]:
    """Super1 (or Super3: one-shot) test + the 5 out-of-distribution images, ours and the peer (once per
    seed of ``seeds``; see :func:`_ours_and_peer`)."""
    if not root.is_dir():
        return {"skipped": f"{root} not found (the NASA Super data set; see docs/benchmarks.md)"}
    roles = nasa_split(root, benchmark)
    ood = nasa_split(root, "Super2").get("different_test", [])
    split = {"train": roles["train"], "val": roles["val"]}
    sets = {"test": [load_pair(root, s) for s in roles["test"]], "ood": [load_pair(root, s) for s in ood]}
    over = [f"data.source={root}", *_crops_per_epoch_as_super1(len(split["train"])), *(overrides or [])]
    result = _ours_and_peer(
        NASA_CONFIG,
        split=split,
        sets=sets,
        minutes=minutes,
        out_dir=out_dir,
        tag=benchmark.lower(),
        overrides=over,
        seeds=seeds,
        scales=NASA_SCALE_SETS,
    )
    return {"benchmark": benchmark, "split": {**split, "test": roles["test"], "ood": ood}, **result}


def _crops_per_epoch_as_super1(n_train: int, super1_train: int = 10) -> list[str]:
    """Overrides giving an epoch as many random crops as a Super1 epoch (10 images x patches_per_image).

    With one training image (Super3) an epoch would be a single step, so early stopping's patience of 15
    epochs meant 15 steps: ours stopped at 259 s of an 8-minute budget while the peer ran on. Equal crops
    per epoch make patience, warm-up and validation frequency mean the same on both benchmarks.
    """
    from microcnn.config import load_config

    if n_train >= super1_train:
        return []
    per_image = load_config(NASA_CONFIG).data.patches_per_image
    return [f"data.patches_per_image={math.ceil(per_image * super1_train / n_train)}"]


def otsu_masks(train: list[tuple[Any, np.ndarray]], test: list[Any], k: int) -> list[np.ndarray]:
    """Multi-Otsu with ``k`` levels; level -> the true class most often under it in the training images."""
    from microcnn.analysis import multi_otsu

    votes = np.zeros((k, k), np.int64)  # rows = Otsu level, cols = true class
    for m, t in train:
        votes += confusion(t, multi_otsu(m, classes=k).mask, k)  # rows = Otsu level
    mapping = votes.argmax(1).astype(np.uint8)
    return [mapping[multi_otsu(m, classes=k).mask] for m in test]


def bench_uhcs(
    *,
    minutes: float,
    out_dir: Path,
    folds: list[int],
    root: Path = DATA / "uhcs_seg24",
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """DeCost folds ``folds``: ours, the peer and multi-Otsu, scored on each held-out fold."""
    if not root.is_dir():
        return {"skipped": f"{root} not found (the UHCS data set; see docs/benchmarks.md)"}
    from microcnn.config import load_config

    all_folds = uhcs_folds(root)
    stems = sorted(s for f in all_folds for s in f)
    over = [f"data.source={root}", f"data.samples_csv={root / 'metadata.csv'}", *(overrides or [])]
    names = list(load_config(UHCS_CONFIG, overrides=over).data.class_names)
    out: dict[str, Any] = {"folds": {}}
    for i in folds:
        test = all_folds[i]
        split = {"train": [s for s in stems if s not in test], "val": test}
        pairs = [load_pair(root, s) for s in test]
        fold = _ours_and_peer(
            UHCS_CONFIG,
            split=split,
            sets={"test": pairs},
            minutes=minutes,
            out_dir=out_dir,
            tag=f"uhcs-fold{i}",
            overrides=over,
        )
        train_pairs = [load_pair(root, s) for s in split["train"]]
        otsu = otsu_masks(train_pairs, [m for m, _ in pairs], len(names))
        fold["multi_otsu"] = {
            "test": score_masks(
                otsu,
                [t for _, t in pairs],
                class_names=names,
                pixel_sizes=[m.pixel_size_um for m, _ in pairs],
            )
        }
        out["folds"][i] = fold
    return out


# Default model -> the `microcnn synth` arguments of a fresh held-out set like its training data
# (configs/models/*.yaml), with a seed none of them was trained on.
SYNTH_SETS = {
    "morphology_classifier": ["--task", "classification", "--size", "96"],
    "property_regressor": [
        "--task",
        "regression",
        "--size",
        "64",
        "--properties",
        "porosity,tortuosity,deff_ratio",
    ],
    "phase_segmenter": ["--task", "segmentation", "--size", "128"],
}


# Trained by the benchmark itself (no default model predicts a size): config -> its fresh held-out set.
SYNTH_TRAINED = {
    "regress_size": [
        "--task",
        "regression",
        "--size",
        "96",
        "--kinds",
        "spheroidal_particles",
        "--properties",
        "mean_diameter_um,phase_fraction",
    ],
}


def _fresh_set(name: str, args: list[str], *, n: int, seed: int, out_dir: Path) -> tuple[Path, str]:
    """A fresh synthetic held-out set (made once) and the command that makes it."""
    import subprocess
    import sys

    data = out_dir / f"synth-{name}"
    synth = ["microcnn", "synth", *args, "--n", str(n), "--seed", str(seed), "--out", str(data)]
    if not data.exists():
        subprocess.run([sys.executable, "-m", *synth], check=True, capture_output=True)
    return data, " ".join(synth)


def _scored(weights: Path, data: Path, commands: list[str]) -> dict[str, Any]:
    from microcnn.engine import evaluate

    metrics = evaluate(weights, data, device="cpu")
    metrics.pop("confusion_matrix", None)
    return {"commands": [*commands, f"microcnn evaluate {weights} {data}"], "metrics": metrics}


def _trained_here(name: str, out_dir: Path) -> tuple[Path, str, float]:
    """Train ``configs/<name>.yaml`` into ``out_dir/<name>`` (once); its weights, command and seconds."""
    import subprocess
    import sys
    import time

    run_dir, config = out_dir / name, Path("configs") / f"{name}.yaml"
    cmd = ["microcnn", "train", str(config), "--run-dir", str(run_dir)]
    t0 = time.perf_counter()
    if not (run_dir / "model.safetensors").exists():
        subprocess.run([sys.executable, "-m", *cmd], check=True, capture_output=True)
    return run_dir / "model.safetensors", " ".join(cmd), time.perf_counter() - t0


def bench_synthetic(*, n: int, out_dir: Path, models_dir: Path = Path("data/models"), seed: int = 2026):
    """The default models on a fresh synthetic set each, and the size regressor (configs/regress_size.yaml)
    trained here: the commands and ``microcnn evaluate``'s metrics."""
    out: dict[str, Any] = {}
    for name, args in SYNTH_SETS.items():
        weights = models_dir / f"{name}.safetensors"
        if not weights.exists():
            out[name] = {"skipped": f"{weights} not present (make models builds it)"}
            continue
        data, synth = _fresh_set(name, args, n=n, seed=seed, out_dir=out_dir)
        out[name] = _scored(weights, data, [synth])
        if args[1] == "segmentation":
            out[name]["per_kind"] = per_kind(weights, data)
    for name, args in SYNTH_TRAINED.items():
        weights, train, seconds = _trained_here(name, out_dir)
        data, synth = _fresh_set(name, args, n=n, seed=seed, out_dir=out_dir)
        out[name] = {**_scored(weights, data, [train, synth]), "train_seconds": seconds}
    return out


def per_kind(weights: Path, data: Path) -> dict[str, dict[str, float]]:
    """Mean IoU (pooled over the images) of a segmentation model on each morphology ("kind" in the set's
    samples.csv), next to 2-level Otsu whose levels are mapped to classes by the true masks of that kind
    (:func:`otsu_masks` on the kind's own images: a user who knows that pores image dark and islands bright
    would set the same). The mean over all images hides a morphology that the model gets wrong."""
    import csv

    from microcnn.inference.predictor import Predictor

    predictor = Predictor.from_checkpoint(weights, device="cpu")
    k = len(predictor.class_names) or 2
    kinds: dict[str, list[tuple[Any, np.ndarray]]] = {}
    with (data / "samples.csv").open() as fh:
        for row in csv.DictReader(fh):
            kinds.setdefault(row["kind"], []).append(load_pair(data, Path(row["file"]).stem))
    out = {}
    for kind, pairs in kinds.items():
        cnn = sum(confusion(predictor.predict(m).mask, t, k) for m, t in pairs)
        otsu = otsu_masks(pairs, [m for m, _ in pairs], k)
        baseline = sum(confusion(o, t, k) for o, (_, t) in zip(otsu, pairs))
        out[kind] = {"n": len(pairs), "mean_iou": float(np.nanmean(_iou_and_accuracy(cnn)[0])),
                     "otsu_mean_iou": float(np.nanmean(_iou_and_accuracy(baseline)[0]))}  # fmt: skip
    return out


SCORED_SETS = ("test", "ood", "test_tta", "ood_tta", "test_scales", "ood_scales")


def _rescored(
    run: dict[str, Any], sets: dict[str, Any], class_names: list[str], scales: tuple[str, ...] = ()
) -> dict[str, Any]:
    kept = {k: v for k, v in run.items() if k not in SCORED_SETS}
    weights = Path(run.get("run_dir", "")) / "model.safetensors"
    if not weights.is_file():
        return {**kept, "error": f"{weights} not found: the model of the earlier run cannot be re-scored"}
    return {**kept, **score_weights(weights, sets, class_names, scales=scales), "rescored": True}


def rescore(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """Section ``name`` (nasa, super3, uhcs) of an earlier run with every model re-scored now, plain and
    with TTA, from the ``model.safetensors`` in its run folder; the training facts are kept as they were.
    (Scoring a saved model again costs minutes, training it again 16 minutes per fold.)"""
    from microcnn.config import load_config

    register_peer()
    out = dict(result)
    if name in ("nasa", "super3"):
        root = DATA / "nasa_super"
        sets = {part: [load_pair(root, s) for s in result["split"][part]] for part in ("test", "ood")}
        names = list(load_config(NASA_CONFIG).data.class_names)
        for who in ("ours", "peer"):
            out[who] = _rescored(result[who], sets, names, NASA_SCALE_SETS)
        if "repeats" in result:
            out["repeats"] = {
                who: [_rescored(r, sets, names, NASA_SCALE_SETS) for r in runs]
                for who, runs in result["repeats"].items()
            }
        return out
    if name != "uhcs":
        raise ValueError(f"Only the nasa, super3 and uhcs sections hold trained models; got {name!r}.")
    root = DATA / "uhcs_seg24"
    all_folds = uhcs_folds(root)
    names = list(load_config(UHCS_CONFIG).data.class_names)
    out["folds"] = {}
    for k, fold in result["folds"].items():
        sets = {"test": [load_pair(root, s) for s in all_folds[int(k)]]}
        out["folds"][k] = {**fold, **{who: _rescored(fold[who], sets, names) for who in ("ours", "peer")}}
    return out

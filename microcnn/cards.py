"""Model cards: the facts about a deployable model, kept in its ``.safetensors`` metadata and as markdown.

A *card* is a plain dict (JSON-serialisable) stored under the key ``"card"`` of the model file's
``"microcnn"`` metadata JSON, so that a program (the app's Models page) can show it without the ``.md`` file.
:func:`export_run` copies a training run's best weights into a models folder, adds the card to the
metadata (every other metadata key and every tensor stays as the run wrote it) and writes ``NAME.md``.

Pure python + numpy: metadata is read with ``safetensors.safe_open(...).metadata()``; nothing is unpickled
and torch is not imported.

Example:
    >>> paths = export_run("runs/models/phase_segmenter", name="phase_segmenter")   # doctest: +SKIP
    >>> read_card("data/models/phase_segmenter.safetensors")["task"]                 # doctest: +SKIP
    'segmentation'
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from microcnn.errors import MicrocnnError

# the metadata key microcnn.engine.checkpoint writes (META_KEY there; not imported: that module needs torch)
META_KEY = "microcnn"
CARD_KEY = "card"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
CARD_INFO_KEYS = ("description", "training_data", "citation", "licence", "pixel_size_note", "reproduce")


class CardError(MicrocnnError, ValueError):
    """A model name, run folder or card file that export cannot use."""


def check_model_name(name: str) -> str:
    """``name`` if it is a plain file stem (letters, digits, ``_ . -``); separators and ``..`` refused."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise CardError(
            f"Model name must be a plain name of letters, digits, '_', '.' or '-' (no '/', '\\' or '..'); "
            f"got {name!r}. Example: --name phase_segmenter."
        )
    return name


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``"microcnn"`` metadata JSON of a ``.safetensors`` file as a dict (``{}`` when absent)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CardError(
            f"Cannot read model file '{path}' ({exc}); expected a microcnn .safetensors."
        ) from None
    try:
        return json.loads(raw.get(META_KEY, "{}"))
    except json.JSONDecodeError as exc:
        raise CardError(f"'{path}': its '{META_KEY}' metadata is not JSON ({exc}).") from None


def read_card(path: str | Path) -> dict[str, Any]:
    """The card stored in a model file's metadata (``{}`` for a file that was never exported)."""
    return dict(read_metadata(path).get(CARD_KEY) or {})


def list_cards(folder: str | Path = "data/models") -> dict[str, dict[str, Any]]:
    """``{model name: card}`` for every ``*.safetensors`` in ``folder`` (name order)."""
    return {p.stem: read_card(p) for p in sorted(Path(folder).glob("*.safetensors"))}


def read_metrics_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a run's ``metrics.csv``, numbers parsed to float (``[]`` when the file is absent)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            rows.append({k: _number(v) for k, v in row.items()})
    return rows


def _number(text: str) -> Any:
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def load_card_info(path: str | Path | None) -> dict[str, str]:
    """Hand-written card facts from a small YAML file (keys: ``CARD_INFO_KEYS``; others are an error)."""
    if path is None:
        return {}
    import yaml

    try:
        info = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CardError(f"Cannot read card file '{path}': {exc}") from None
    if not isinstance(info, dict):
        raise CardError(f"Card file '{path}' must be a mapping of {', '.join(CARD_INFO_KEYS)}.")
    unknown = sorted(set(info) - set(CARD_INFO_KEYS))
    if unknown:
        raise CardError(f"Card file '{path}': unknown keys {unknown}; allowed: {', '.join(CARD_INFO_KEYS)}.")
    return {k: " ".join(str(v).split()) for k, v in info.items()}


def joint_iou_from_accuracy(pixel_accuracy: float) -> float:
    """Joint IoU over one-hot channels (smp ``IoU`` on argmax predictions, background included).

    Each correct pixel adds 1 to intersection and union; each wrong pixel adds 2 to the union (a false
    positive in one channel, a false negative in another), so IoU = a / (a + 2 (1 - a)) = a / (2 - a).
    """
    return pixel_accuracy / (2.0 - pixel_accuracy)


def held_out_metrics(meta: dict[str, Any]) -> dict[str, float]:
    """The validation metrics of the saved epoch (``val_*`` keys, prefix removed), plus joint IoU."""
    row = meta.get("metrics") or {}
    out = {k[4:]: float(v) for k, v in row.items() if k.startswith("val_") and isinstance(v, int | float)}
    if meta.get("task") == "segmentation" and "pixel_accuracy" in out:
        out["joint_iou"] = joint_iou_from_accuracy(out["pixel_accuracy"])
    return out


def build_card(
    meta: dict[str, Any],
    *,
    name: str,
    history: list[dict[str, Any]] | None = None,
    info: dict[str, str] | None = None,
    trained_on: str | None = None,
) -> dict[str, Any]:
    """The card of a model from its run metadata, its metrics history and hand-written ``info``.

    Args:
        meta: the run's ``model.safetensors`` metadata (:func:`read_metadata`).
        name: the exported model name.
        history: rows of ``metrics.csv`` (epochs trained).
        info: ``description``, ``training_data``, ``citation``, ``licence``, ``pixel_size_note``,
            ``reproduce`` (see :func:`load_card_info`).
        trained_on: training date (ISO, UTC); default today.
    """
    from microcnn import __version__

    info = dict(info or {})
    units = meta.get("target_units") or []
    targets = [f"{t} ({u})" for t, u in zip(meta.get("target_names") or [], units, strict=False)]
    pixel = meta.get("pixel_size_um")
    return {
        "name": name,
        "task": meta.get("task"),
        "description": info.get("description", ""),
        "class_names": list(meta.get("class_names") or []),
        "target_names": list(meta.get("target_names") or []),
        "target_units": list(units),
        "targets": targets,
        "architecture": dict(meta.get("model") or {}),
        "training_data": info.get("training_data", str(meta.get("data_source", ""))),
        "citation": info.get("citation", ""),
        "licence": info.get("licence", ""),
        "pixel_size_um": pixel,
        "pixel_size_note": info.get("pixel_size_note", "" if pixel else "unknown (lengths in px)"),
        "held_out_metrics": held_out_metrics(meta),
        "best_epoch": meta.get("epoch"),
        "epochs_trained": len(history or []),
        "monitor": meta.get("monitor"),
        "training_date": trained_on or dt.datetime.now(dt.UTC).date().isoformat(),
        "microcnn_version": meta.get("microcnn_version", __version__),
        "reproduce": info.get("reproduce", ""),
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def render_card(card: dict[str, Any]) -> str:
    """The card as markdown: a facts table, the held-out metrics table and the reproducing command."""
    pixel = card.get("pixel_size_um")
    pixel_text = f"{pixel:g} µm/px" if isinstance(pixel, int | float) and pixel == pixel else "unknown"
    note = card.get("pixel_size_note") or ""
    if note.startswith("unknown") and pixel_text == "unknown":
        pixel_text = note
    elif note:
        pixel_text += f" ({note})"
    facts = [
        ("task", card.get("task")),
        ("classes (mask value / label index = position)", card.get("class_names")),
        ("targets (units)", card.get("targets")),
        ("architecture", card.get("architecture")),
        ("training data", card.get("training_data")),
        ("citation", card.get("citation")),
        ("licence", card.get("licence")),
        ("pixel size at training", pixel_text),
        (
            "saved epoch",
            f"{card.get('best_epoch')} of {card.get('epochs_trained')} (by {card.get('monitor')})",
        ),
        ("training date", card.get("training_date")),
        ("microcnn version", card.get("microcnn_version")),
    ]
    lines = [f"# {card['name']}", "", card.get("description") or "", "", "| fact | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(v).replace('|', '/')} |" for k, v in facts if _fmt(v)]
    lines += ["", "## Held-out metrics", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(card.get("held_out_metrics", {}).items())]
    lines += [
        "",
        "## Reproduce",
        "",
        "From the repository root (`make models` rebuilds every default model in data/models):",
        "",
        "```bash",
        card.get("reproduce") or "",
        "```",
    ]
    lines += ["", "The same facts are in the `.safetensors` metadata (JSON key `microcnn` -> `card`).", ""]
    return "\n".join(lines)


def _training_date(weights: Path) -> str:
    stamp = dt.datetime.fromtimestamp(weights.stat().st_mtime, tz=dt.UTC)
    return stamp.date().isoformat()


def _write_weights(src: Path, dst: Path, meta: dict[str, Any]) -> None:
    """Copy the tensors of ``src`` bit for bit into ``dst`` with ``meta`` as the ``microcnn`` metadata."""
    from safetensors import safe_open
    from safetensors.numpy import save

    with safe_open(str(src), framework="numpy") as f:
        raw = dict(f.metadata() or {})
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    raw[META_KEY] = json.dumps(meta, allow_nan=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.write_bytes(save(tensors, metadata=raw))
    tmp.replace(dst)


def export_run(
    run_dir: str | Path,
    *,
    name: str,
    to: str | Path = "data/models",
    card_info: dict[str, str] | None = None,
    force: bool = False,
) -> tuple[Path, Path]:
    """Export ``run_dir/model.safetensors`` as ``to/NAME.safetensors`` + the model card ``to/NAME.md``.

    The exported file holds the run's tensors unchanged and the run's metadata with one key added,
    ``"card"`` (:func:`build_card`). Existing files are kept unless ``force``.

    Returns:
        (weights path, card path).

    Example:
        >>> export_run("runs/models/phase_segmenter", name="phase_segmenter")   # doctest: +SKIP
        (PosixPath('data/models/phase_segmenter.safetensors'), PosixPath('data/models/phase_segmenter.md'))
    """
    name = check_model_name(name)
    run_dir, to = Path(run_dir), Path(to)
    weights = run_dir / "model.safetensors"
    if not weights.is_file():
        raise CardError(
            f"'{run_dir}' holds no model.safetensors; train first: microcnn train CONFIG --run-dir ..."
        )
    out_w, out_md = to / f"{name}.safetensors", to / f"{name}.md"
    existing = [str(p) for p in (out_w, out_md) if p.exists()]
    if existing and not force:
        raise CardError(f"{' and '.join(existing)} already exist; pass --force to overwrite them.")
    meta = read_metadata(weights)
    history = read_metrics_csv(run_dir / "metrics.csv")
    card = build_card(meta, name=name, history=history, info=card_info, trained_on=_training_date(weights))
    to.mkdir(parents=True, exist_ok=True)
    _write_weights(weights, out_w, {**meta, CARD_KEY: card})
    out_md.write_text(render_card(card), encoding="utf-8")
    return out_w, out_md

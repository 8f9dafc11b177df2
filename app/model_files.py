"""Model files the app may show, rename, delete and offer for download, confined to the models folders.

Folders: ``<project>/data/models/`` (default weights) and ``<project>/runs/<run>/`` (trained runs). A model
is named by its path relative to the project folder, e.g. ``runs/exp1/model.safetensors``. Every name
that comes from the browser goes through :func:`resolve`, which refuses absolute paths, ``..`` and
anything that does not end inside those folders as an existing ``.safetensors`` file. Cards are read from
the safetensors header (``safe_open(...).metadata()``): no tensor is loaded, nothing is unpickled.

The default models that ship with microcnn (``DEFAULT_MODELS`` in data/models/, built by ``make models`` from
configs/models/) are read-only here: :func:`rename` and :func:`delete` refuse them, so only the user's own
files (trained runs, their own exports) can be renamed or deleted from the app.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from microcnn.errors import ModelFileError

SUFFIX = ".safetensors"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,99}$")
# The committed default models (data/models/NAME.safetensors; configs/models/NAME.card.yaml, `make models`).
DEFAULT_MODELS = ("morphology_classifier", "nasa_gamma_prime", "phase_segmenter", "property_regressor")
RUN_MODEL = "model.safetensors"  # the file name the trainer writes in runs/<run>/


class UnsafeModelPathError(ModelFileError):
    """A model name from the user points outside the models folders or is not a plain file name."""


class ProtectedModelError(ModelFileError):
    """A default model (data/models/) was asked to be renamed or deleted."""


@dataclass(frozen=True)
class ModelFile:
    """One weights file: ``name`` relative to the project folder (POSIX form), ``path`` absolute."""

    name: str
    path: Path
    size_bytes: int


def model_folders(project: Path) -> list[Path]:
    """data/models/ and every runs/<run>/ folder under ``project`` (existing ones only), resolved."""
    project = project.resolve()
    folders = [project / "data" / "models"]
    runs = project / "runs"
    if runs.is_dir():
        folders += sorted(p for p in runs.iterdir() if p.is_dir() and not p.is_symlink())
    return [f.resolve() for f in folders if f.is_dir()]


def list_models(project: Path) -> list[ModelFile]:
    """All ``*.safetensors`` files directly inside the model folders, sorted by name."""
    project = project.resolve()
    found = []
    for folder in model_folders(project):
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            if path.is_file() and not path.is_symlink():
                found.append(ModelFile(path.relative_to(project).as_posix(), path, path.stat().st_size))
    return found


def resolve(project: Path, name: str) -> Path:
    """The absolute path of model ``name`` (relative to ``project``), or UnsafeModelPathError.

    Refused: absolute paths (POSIX or Windows), any ``..`` part, backslashes, files outside data/models/
    and runs/<run>/, other suffixes, symlinks, files that do not exist.
    """
    text = str(name)
    parts = PurePosixPath(text).parts
    if not text or PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or "\\" in text:
        raise UnsafeModelPathError(f"model names are relative to the project folder; got {text!r}")
    if ".." in parts:
        raise UnsafeModelPathError(f"'..' is not allowed in a model name; got {text!r}")
    project = project.resolve()
    path = (project / text).resolve()
    if path.parent not in model_folders(project) or path.suffix != SUFFIX:
        raise UnsafeModelPathError(
            f"{text!r} is not a {SUFFIX} file in data/models/ or runs/<run>/; choose one from the list"
        )
    if not path.is_file() or (project / text).is_symlink():
        raise UnsafeModelPathError(f"model file {text!r} does not exist (or is a link); refresh the list")
    return path


def label(name: str) -> str:
    """Short name of a model for results: the run for runs/<run>/model.safetensors, else the file stem.

    Example:
        >>> label("data/models/phase_segmenter.safetensors"), label("runs/exp1/model.safetensors")
        ('phase_segmenter', 'exp1')
        >>> label("runs/exp1/steel_v2.safetensors")
        'exp1/steel_v2'
    """
    path = PurePosixPath(str(name))
    if len(path.parts) == 3 and path.parts[0] == "runs":
        return path.parent.name if path.name == RUN_MODEL else f"{path.parent.name}/{path.stem}"
    return path.stem if path.suffix == SUFFIX else path.name


def is_default(project: Path, path: Path) -> bool:
    """True for a committed default model: ``<project>/data/models/<one of DEFAULT_MODELS>.safetensors``."""
    folder = (Path(project).resolve() / "data" / "models").resolve()
    return Path(path).parent.resolve() == folder and Path(path).stem in DEFAULT_MODELS


def _refuse_default(project: Path, path: Path, action: str) -> None:
    if is_default(project, path):
        raise ProtectedModelError(
            f"{path.name} is one of the default models in data/models/ ({', '.join(DEFAULT_MODELS)}); "
            f"the app does not {action} them (`make models` rebuilds them). Only your own models "
            "(runs/<run>/, your exports) can be renamed or deleted here."
        )


def read_card(path: Path) -> dict[str, Any]:
    """The model card: the safetensors metadata with JSON values decoded (strings stay strings).

    The JSON object that microcnn's ``save_weights`` stores under the key "microcnn" (or any JSON object
    stored under a file's only key) is merged into the card; other keys (e.g. "format") are kept as they are.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            raw = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for a corrupt header
        raise ModelFileError(
            f"{path.name} is a corrupt or unsupported model file ({exc}); re-export it as .safetensors"
        ) from exc
    card: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            decoded = json.loads(value)
        except (TypeError, ValueError):
            decoded = value
        if isinstance(decoded, dict) and (key == "microcnn" or len(raw) == 1):
            card.update(decoded)
        else:
            card[key] = decoded
    return card


def markdown_card(path: Path, *, max_bytes: int = 200_000) -> str | None:
    """The text of ``NAME.md`` next to ``NAME.safetensors`` (a regular file, not a link), else None."""
    card = path.with_suffix(".md")
    if not card.is_file() or card.is_symlink() or card.stat().st_size > max_bytes:
        return None
    return card.read_text(encoding="utf-8", errors="replace")


def rename(project: Path, name: str, new_stem: str) -> Path:
    """Rename model ``name`` to ``new_stem`` + .safetensors in the same folder; returns the new path.

    Default models are refused (ProtectedModelError); a renamed run model is still that run's model
    (app/jobs.py accepts any single ``.safetensors`` file in the run folder).
    """
    path = resolve(project, name)
    _refuse_default(project, path, "rename")
    stem = new_stem.strip().removesuffix(SUFFIX)
    if not NAME_RE.match(stem) or ".." in stem:
        raise UnsafeModelPathError(
            f"new name {new_stem!r} must be a plain file name (letters, digits, '.', '_', '-', space; "
            "no folders); e.g. 'steel_unet_v2'"
        )
    target = path.with_name(stem + SUFFIX)
    if target.exists() or target.with_suffix(".md").exists():
        raise ModelFileError(f"{target.name} already exists in {path.parent.name}/; pick another name")
    path.rename(target)
    if markdown_card(path) is not None:  # the card travels with its weights
        path.with_suffix(".md").rename(target.with_suffix(".md"))
    return target


def delete(project: Path, name: str) -> None:
    """Delete model ``name`` (after :func:`resolve` accepted it) and its NAME.md card; not a default."""
    path = resolve(project, name)
    _refuse_default(project, path, "delete")
    if markdown_card(path) is not None:
        path.with_suffix(".md").unlink()
    path.unlink()

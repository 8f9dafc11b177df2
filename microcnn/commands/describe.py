"""``microcnn describe NAME|CONFIG.yaml``: per-layer table of a model (shapes, parameters, receptive
field, cumulative stride, FLOPs) for one input size, as Markdown, CSV or JSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["depth=3", "widths=[8,16]"]`` -> ``{"depth": 3, "widths": [8, 16]}`` (values read as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value (e.g. --set depth=3); got {item!r}.")
        out[key.strip()] = yaml.safe_load(value)
    return out


def model_spec(target: str) -> dict[str, Any]:
    """The ``{"name": ..., **kwargs}`` mapping for a model name or the ``model:`` section of a YAML file."""
    if not target.endswith((".yaml", ".yml")):
        return {"name": target}
    import yaml

    from microcnn.errors import ConfigError

    path = Path(target)
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}. Give a model name or an existing YAML file.")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    spec = data.get("model") if isinstance(data, dict) else None
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{path.name} has no 'model:' mapping (e.g. model: {{name: unet, depth: 3}}).")
    return dict(spec)


def run(args: argparse.Namespace) -> int:
    import sys

    from microcnn.errors import ConfigError
    from microcnn.models import build_model
    from microcnn.models.describe import describe

    try:
        spec = {**model_spec(args.model), **parse_set(args.set or [])}
        model = build_model(spec)
        table = describe(model, args.input)
    except ConfigError:
        raise
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = {"markdown": table.to_markdown, "csv": table.to_csv, "json": table.to_json}[args.format]()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        print(text)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "describe",
        help="per-layer table of a model: shapes, parameters, receptive field, FLOPs",
        description=__doc__,
    )
    p.add_argument(
        "model", help="a registered model name (e.g. unet) or a YAML config with a 'model:' section"
    )
    p.add_argument("--input", default="1x256x256", help="input size C×H×W (default 1x256x256)")
    p.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown", help="output format")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a model argument (repeatable)"
    )
    p.add_argument("--out", help="write the table to this file instead of printing it")
    p.set_defaults(func=run)

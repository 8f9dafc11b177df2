"""``microcnn export RUN_DIR --name NAME``: publish a run's best weights as NAME.safetensors + NAME.md.

The run's model.safetensors is copied (tensors unchanged) into the models folder with its metadata plus a
model card (task, classes / targets with units, architecture, training data, pixel size, held-out metrics,
training date, microcnn version, the command that reproduces it); the card is also written as markdown.
Existing files are kept unless --force.

Examples:
  microcnn export runs/models/phase_segmenter --name phase_segmenter
  microcnn export runs/my_run --name my_model --to models/ --description "U-Net for our ferrite/pearlite"
  microcnn export runs/models/nasa_gamma_prime --name nasa_gamma_prime \\
      --card configs/models/nasa_gamma_prime.card.yaml --force
"""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from microcnn.cards import export_run, load_card_info

    info = load_card_info(args.card)
    if args.description:
        info["description"] = args.description
    weights, card = export_run(args.run_dir, name=args.name, to=args.to, card_info=info, force=args.force)
    print(f"wrote {weights} and {card}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="publish a run's weights + model card into data/models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", help="run folder written by microcnn train (holds model.safetensors)")
    p.add_argument("--name", required=True, help="model name: a plain file stem, e.g. phase_segmenter")
    p.add_argument("--to", default="data/models", help="models folder (default: data/models)")
    p.add_argument("--description", default=None, help="one-paragraph description for the card")
    p.add_argument(
        "--card",
        default=None,
        metavar="YAML",
        help="card facts: description, training_data, citation, licence, pixel_size_note, reproduce",
    )
    p.add_argument("--force", action="store_true", help="overwrite NAME.safetensors / NAME.md if present")
    p.set_defaults(func=run)

"""``microcnn predict-h5``: predict every image of an HDF5 archive into a results file (resumable)."""

from __future__ import annotations

import argparse

from microcnn.commands.predictor_options import (
    add_model_options,
    add_predictor_options,
    model_source,
    predictor_options,
)

DESCRIPTION = """\
Predict every image of an HDF5 archive with one model, an ensemble, or a classical baseline (--method otsu |
multi_otsu | adaptive_threshold | watershed) and write a results file:
class probabilities, properties ± std, phase fractions (optionally masks), with provenance (model sha256,
microcnn version, input size and sha256, preprocessing, start/end time).

The job streams the archive (memory does not grow with it), holds <output>.lock, writes <output>.partial
and renames it to <output> only when complete. Rerun the same command after a crash or kill to continue
where it stopped (with the same --chunk); rerunning a finished job reports it as done.
Under torchrun (torchrun --nproc_per_node N -m microcnn predict-h5 ...) the items are sharded over ranks
and joined into <output> by an HDF5 virtual dataset (keep the <output>.rankN.h5 files beside it).

Exit codes: 0 complete, 3 partial (some items failed; see the 'failed' and 'error' datasets),
2 usage or input error.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict-h5",
        help="batch prediction over an HDF5 archive (resumable, torchrun-sharded)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(parser, model_help="model file; repeat for an ensemble (mean ± std over members)")
    parser.add_argument("--input", required=True, help="input HDF5 archive (microcnn pack / synth)")
    parser.add_argument("--dataset", default="/images", help="images dataset in the input (default /images)")
    parser.add_argument("--output", required=True, help="results .h5 file (must not exist)")
    parser.add_argument("--chunk", type=int, default=16,
                        help="items per batch, flush, resume step (16); a resume must keep it")  # fmt: skip
    parser.add_argument("--save-masks", action="store_true", help="segmentation: also store the masks")
    add_predictor_options(parser, rescale=False)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from microcnn.engine.distributed import init_distributed, shutdown
    from microcnn.inference.batch import predict_archive

    models = model_source(args)  # paths: loaded by predict_archive once it holds the output's lock
    info = init_distributed(args.device)
    kwargs = predictor_options(args)
    bar = tqdm(desc=f"rank {info.rank}" if info.active else "predict-h5", unit="img", disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        summary = predict_archive(models, args.input, args.output, dataset=args.dataset, chunk=args.chunk,
                                  save_masks=args.save_masks, progress=progress,
                                  predictor_kwargs=kwargs)  # fmt: skip
    finally:
        bar.close()
        shutdown()
    if info.is_main:
        done = " (already finished by an earlier run of this job)" if summary.already_done else ""
        print(f"{summary.status}: {summary.n_done}/{summary.n_items} items -> {summary.output}{done}")
        if summary.failed:
            shown = ", ".join(str(i) for i in summary.failed[:20])
            print(f"failed items ({summary.n_failed}): {shown}{' ...' if summary.n_failed > 20 else ''}")
    return summary.exit_code

"""Benchmark of the app's main job: one 1024×1024 micrograph analysed with the default phase segmenter.

"Analysed" is what the Analyze page does after an upload: read the file (16-bit TIFF), predict the phase
map with ``Predictor`` (tiled, no TTA), and quantify it (phase fractions with bootstrap CI, particle sizes
in µm). Target (issue 7): under 3 s on the 2-core CPU. Reports the median of ``--repeats`` runs after one
warm-up, split into its three stages, with the load average at the start; and, as the user waits for it,
the Analyze page itself (Streamlit's AppTest runs the page script in this process): from the click on
"Analyze" to the rendered results (overlay, tables, histogram, downloads), the model already cached.

Usage: ``python -m benchmarks.bench_analyze [--repeats 5] [--model data/models/phase_segmenter.safetensors]``
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _micrograph_bytes(side: int) -> bytes:
    """A 16-bit TIFF of a synthetic spheroidite-like micrograph (what a user would upload)."""
    import numpy as np
    import tifffile

    from microcnn.synth import generate

    sample = generate("spheroidal_particles", size=side, rng=np.random.default_rng(7), pixel_size_um=0.05)
    buf = io.BytesIO()
    tifffile.imwrite(buf, (sample.image * 65535).astype(np.uint16), resolution=(1 / 0.05e-4, 1 / 0.05e-4),
                     resolutionunit="CENTIMETER")  # fmt: skip
    return buf.getvalue()


def _app_page_seconds(data: bytes, model: Path, *, repeats: int) -> float:
    """Median seconds of the Analyze page's rerun after a click on "Analyze" (after one warm-up click)."""
    import shutil
    import sys
    import tempfile

    from streamlit.testing.v1 import AppTest

    app = REPO / "app" / "streamlit_app.py"
    sys.path.insert(0, str(app.parent))  # the app's helper modules import by name
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data" / "models").mkdir(parents=True)
        (Path(tmp) / "runs").mkdir()
        shutil.copy2(model, Path(tmp) / "data" / "models" / model.name)
        os.environ["MICROCNN_PROJECT_DIR"] = tmp
        at = AppTest.from_file(str(app), default_timeout=300)
        at.run()
        at.file_uploader[0].upload("micrograph.tif", data, "image/tiff").run()
        at.radio(key="analyze.kind").set_value("CNN model").run()
        at.selectbox(key="analyze.model").select(f"data/models/{model.name}").run()
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            at.button(key="analyze.run").click().run()
            times.append(time.perf_counter() - t0)
        if at.exception or at.error:
            raise RuntimeError(f"the Analyze page failed: {[e.value for e in [*at.exception, *at.error]]}")
    return round(statistics.median(times[1:]), 3)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--model", default=str(REPO / "data" / "models" / "phase_segmenter.safetensors"))
    args = parser.parse_args(argv)

    from microcnn.analysis.report import quantify
    from microcnn.inference.predictor import Predictor
    from microcnn.io.images import read_micrograph

    data = _micrograph_bytes(args.side)
    predictor = Predictor.from_checkpoint(args.model, device="cpu")
    load = os.getloadavg()[0]
    stages: dict[str, list[float]] = {"read": [], "predict": [], "quantify": [], "total": []}
    for i in range(args.repeats + 1):
        t0 = time.perf_counter()
        m = read_micrograph(data)
        t1 = time.perf_counter()
        result = predictor.predict(m)
        t2 = time.perf_counter()
        quantify(result, particle_class=1, rng=0)
        t3 = time.perf_counter()
        if i == 0:
            continue  # warm-up
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            stages[key].append(dt)
    out = {
        "image": f"{args.side}x{args.side} uint16 TIFF",
        "model": Path(args.model).name,
        "median_seconds": {k: round(statistics.median(v), 3) for k, v in stages.items()},
        "target_seconds": 3.0,
        "load_average_at_start": round(load, 2),
    }
    out["app_page_seconds"] = _app_page_seconds(data, Path(args.model), repeats=args.repeats)
    out["meets_target"] = max(out["median_seconds"]["total"], out["app_page_seconds"]) < 3.0
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()

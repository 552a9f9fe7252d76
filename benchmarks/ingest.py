"""Ingest throughput: faces/s on a folder fixture with 1 and 2 workers.

    python benchmarks/ingest.py [--n 500]

Builds a folder-per-class fixture of N real (sample) faces at 512 px with the
test fixture builders, then times ``ferdata.faces.ingest.ingest`` (dlib HOG detection,
68-point landmarks, alignment, hull mask, face store write).
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fixtures import dataset_fixtures as fx  # noqa: E402

from ferdata.config import IngestConfig  # noqa: E402
from ferdata.datasets import read_dataset  # noqa: E402
from ferdata.faces.ingest import ingest  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--size", type=int, default=512, help="fixture image side")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        classes = ("happy", "sad", "neutral", "angry")
        per = -(-args.n // len(classes))
        root = fx.make_folder(d / "data", fx.sample_faces(), classes=classes, n_per_class=per, size=args.size)
        n = sum(1 for _ in read_dataset("folder", root))
        res = {}
        for w in (1, 2):
            t = time.perf_counter()
            rep = ingest(read_dataset("folder", root), d / f"w{w}.h5", "folder", IngestConfig(), workers=w)
            dt = time.perf_counter() - t
            res[w] = rep["ingested"] / dt
            print(f"workers={w}: {rep['ingested']}/{n} faces in {dt:.2f} s = {res[w]:.1f} faces/s "
                  f"({rep['skipped']} skipped)")
        print(f"scaling 1 -> 2 workers: {res[2] / res[1]:.2f}x")


if __name__ == "__main__":
    main()

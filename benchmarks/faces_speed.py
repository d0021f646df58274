"""Face detection and alignment time on scikit-image's astronaut (512 x 512, one face).

Times, in one process: the MTCNN weights' loading (torch-free reader), the first `detect_faces`
(compiles PNet's padded pyramid shapes and the RNet/ONet batch shapes), the steady state (best of
--repeats), and as the baseline the same pipeline with the PyTorch rebuild of the networks
(tests/torch_refs/mtcnn.py driven by the test's NumPy box stages, --threads torch threads); then
`align_face` to 512 px plus `paste_face` back at x4 (the MetaF2N test-time path).

    .venv/bin/python benchmarks/faces_speed.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timing import best_of  # noqa: E402  (benchmarks/, the script's folder)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for the baseline")
    args = p.parse_args()

    import jax
    import numpy as np
    import skimage.data
    import torch

    from sslsr.faces import align, detect
    from sslsr.weights import facenet
    from tests import test_faces_detect as reference

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {jax.devices()[0].platform}, "
          f"load average {os.getloadavg()[0]:.1f}")
    image = skimage.data.astronaut()
    t = time.perf_counter()
    facenet.load_mtcnn()
    load = time.perf_counter() - t
    t = time.perf_counter()
    faces = detect.detect_faces(image)
    first = time.perf_counter() - t
    steady = best_of(lambda: detect.detect_faces(image), args.repeats)

    torch.set_num_threads(args.threads)
    nets = {n: reference.ref.load(n, facenet.weights_path(n)) for n in reference.NAMES}
    baseline = best_of(lambda: reference._reference_detect(image, nets), args.repeats)

    def align_and_paste():
        face, affine = align.align_face(image, faces[0].landmarks, 512)
        align.paste_face(np.zeros((2048, 2048, 3), np.float32), face, affine, scale=4)

    aligning = best_of(align_and_paste, args.repeats)
    print("| step | seconds |\n|---|---|")
    print(f"| load weights (3 .pt, no torch) | {load:.3f} |")
    print(f"| detect_faces, first call (compiles) | {first:.2f} |")
    print(f"| detect_faces, steady (best of {args.repeats}) | {steady:.3f} |")
    print(f"| PyTorch networks + NumPy stages (baseline, {args.threads} threads) | {baseline:.3f} |")
    print(f"| align_face 512 + paste_face x4 into 2048x2048 | {aligning:.3f} |")
    print(f"\nsteady detect_faces / baseline: {steady / baseline:.2f}x; faces found: {len(faces)}")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Run HERE (not on the GPU machine) before benchmarks/gpu_check.sh: fetches the wheels the
# GPU machine's image lacks (Python 3.12, manylinux x86-64) into .whl/ and makes the
# built-in sample (faces.h5 + backgrounds/, needs dlib: done here) in .gpu/sample/.
# Both folders are git-ignored; the device call carries them. docs/rendering.md, "On a GPU".
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
rm -rf .whl && mkdir -p .whl .gpu
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# what ferdata needs that the image lacks (kornia: GPU colour ops; simplejpeg: loader;
# pycocotools: COCO backgrounds); the rest (torch, h5py, numba, opencv, scipy, skimage,
# click, tqdm, matplotlib, pillow) is there
for w in simplejpeg kornia kornia-rs pycocotools; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" -d .whl "$w"
done
rm -rf .gpu/sample && ferdata sample -o .gpu/sample >/dev/null
du -sh .whl .gpu

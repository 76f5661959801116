# Sourced by the GPU scripts: the wheels the GPU image lacks (monai, kornia, kornia_rs, nibabel, pydicom;
# `pip download --python-version 3.12 ...` into .whl/), installed once into /tmp/site, and the data
# copied into .gpudata/ (both git-ignored and carried).
[ -d /tmp/site/monai ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src MEDCNN_DATA=$PWD/.gpudata PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT

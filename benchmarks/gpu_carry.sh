#!/usr/bin/env bash
# Install ramer with FAISS on the GPU on a host that reaches no package registry: pack on a
# machine with pip and PyPI, carry the folder over, unpack on the GPU host.
#
#   bash benchmarks/gpu_carry.sh pack DIR      # here: DIR/parts/partNN + DIR/gsite.sha256 + DIR/wheels/
#   bash benchmarks/gpu_carry.sh unpack DIR    # there, in a ramer checkout: $GSITE and $SITE
#   export PYTHONPATH=$PWD:$SITE:$GSITE        # (defaults below)
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh --carried    # checks the result (docs/performance.md, "GPU")
#
# The host is expected to have python and a CUDA build of torch (GPU images do); faiss-gpu,
# the CUDA 12 libraries it loads and the ramer dependencies the host lacks are carried.
# Settings, all from the environment:
#   PYVER      the host's python version, e.g. 3.11 (default 3.12); wheels are manylinux x86_64
#   FAISS_GPU  the faiss-gpu requirement (default faiss-gpu==1.15.1, PyPI's wheel, built for CUDA 12:
#              the host's driver must support CUDA 12 or later)
#   CUDA_LIBS  the CUDA 12 runtime wheels faiss-gpu loads (cudart, cublas, curand)
#   WHEELS     what else the host lacks, carried as wheels. The default is ramer's dependencies that
#              a torch image usually lacks; list the host's gaps with
#              `python3 -c "import qdrant_client, qdrant_edge, pydantic_settings, plotly"` there.
#   PART_SIZE  size of each carried part (default 58M: each file under a 64 MiB transfer limit)
#   SITE       where unpack installs WHEELS (default /tmp/ramer-site)
#   GSITE      where unpack puts faiss-gpu and the CUDA libraries (default /tmp/ramer-gsite)
# The GPU part is unpacked into a site folder and xz-packed (~370 MB) rather than carried as
# wheels (~450 MB): the CUDA headers and libnvblas, which faiss never loads, are left out.
set -euo pipefail
PYVER=${PYVER:-3.12}
FAISS_GPU=${FAISS_GPU:-faiss-gpu==1.15.1}
CUDA_LIBS=${CUDA_LIBS:-nvidia-cublas-cu12==12.6.4.1 nvidia-cuda-runtime-cu12==12.6.77 nvidia-curand-cu12==10.3.7.77}
WHEELS=${WHEELS:-qdrant-client qdrant-edge-py==0.9.0 pydantic pydantic-core pydantic-settings plotly \
annotated-types python-dotenv typing-inspection typing-extensions h2 hpack hyperframe}
PART_SIZE=${PART_SIZE:-58M}
SITE=${SITE:-/tmp/ramer-site}
GSITE=${GSITE:-/tmp/ramer-gsite}

pack() {
    local dir=$1
    local plat=(--only-binary=:all: --python-version "$PYVER" --implementation cp
                --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
                --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
    mkdir -p "$dir/gpu" "$dir/wheels" "$dir/parts"
    # shellcheck disable=SC2086  # the lists are word-split on purpose
    python3 -m pip download -q --no-deps "${plat[@]}" -d "$dir/gpu" "$FAISS_GPU" $CUDA_LIBS
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps "${plat[@]}" -d "$dir/wheels" $WHEELS
    rm -rf "$dir/gsite" && python3 -m pip install -q --no-deps --no-compile --target "$dir/gsite" "$dir"/gpu/*.whl
    rm -rf "$dir"/gsite/nvidia/*/include "$dir/gsite/nvidia/cublas/lib/libnvblas.so.12" "$dir/gsite/nvidia/__init__.py"
    tar -cf - -C "$dir/gsite" . | xz -6 -T0 > "$dir/gsite.tar.xz"
    sha256sum "$dir/gsite.tar.xz" | cut -d' ' -f1 > "$dir/gsite.sha256"
    split -b "$PART_SIZE" -d -a 2 "$dir/gsite.tar.xz" "$dir/parts/part"
    rm -rf "$dir/gsite" "$dir/gpu" "$dir/gsite.tar.xz"
    ls -la "$dir/parts" "$dir/wheels"
}

unpack() {
    local dir=$1 archive
    archive=$(mktemp --suffix=.tar.xz)
    cat "$dir"/parts/part* > "$archive"
    echo "$(cat "$dir/gsite.sha256")  $archive" | sha256sum -c
    mkdir -p "$GSITE" && tar -xJf "$archive" -C "$GSITE" && rm "$archive"
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$dir"/wheels/*.whl
    # pack dropped nvidia/__init__.py, so the CUDA 12 libraries join the host's `nvidia` namespace
    # package (were the host's a regular package, it would hide them and faiss names the missing wheel)
    PYTHONPATH=$PWD:$SITE:$GSITE python3 -c "import faiss, torch; print('faiss', faiss.__version__, \
'gpus', faiss.get_num_gpus(), 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
}

case ${1:-} in
    pack) pack "${2:?usage: gpu_carry.sh pack DIR}" ;;
    unpack) unpack "${2:?usage: gpu_carry.sh unpack DIR}" ;;
    *) echo "usage: gpu_carry.sh pack|unpack DIR (settings: see the comment at the top)" >&2; exit 2 ;;
esac

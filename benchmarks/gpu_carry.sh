#!/usr/bin/env bash
# faiss-gpu and ramer's dependencies for a GPU machine that reaches no package registry
# (the lent device of 2026-12-04; docs/performance.md, "GPU"). Two halves:
#
#   bash benchmarks/gpu_carry.sh pack DIR [PYVER]   # here, with PyPI: DIR/parts/partNN (58 MiB
#                                                   # each) + DIR/wheels/ + DIR/gsite.sha256
#   bash benchmarks/gpu_carry.sh unpack DIR         # there: /tmp/gsite + /tmp/site, then
#   export PYTHONPATH=$PWD:/tmp/site:/tmp/gsite && OUT=/tmp/gpu bash benchmarks/gpu_check.sh --carried
#
# PYVER is the target machine's python (default 3.12). Only the packages its image lacks
# go as wheels (the image of 2026-12-04 had torch, numpy, scipy, scikit-learn, pyarrow,
# typer, rich, matplotlib, grpcio, httpx, protobuf and pytest). The CUDA 12 libraries
# faiss-gpu loads (cudart, cublas, curand) are unpacked into a site folder and xz-packed
# (~370 MB), since their wheels alone are ~450 MB.
set -euo pipefail
cmd=${1:?pack|unpack}; dir=${2:?folder}
if [[ $cmd == pack ]]; then
    pyver=${3:-3.12}
    plat=(--only-binary=:all: --python-version "$pyver" --implementation cp --platform manylinux_2_28_x86_64
          --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
    mkdir -p "$dir/gpu" "$dir/wheels" "$dir/parts"
    python3 -m pip download -q --no-deps "${plat[@]}" -d "$dir/gpu" faiss-gpu==1.15.1 \
        nvidia-cublas-cu12==12.6.4.1 nvidia-cuda-runtime-cu12==12.6.77 nvidia-curand-cu12==10.3.7.77
    python3 -m pip download -q --no-deps "${plat[@]}" -d "$dir/wheels" qdrant-client qdrant-edge-py==0.9.0 \
        pydantic pydantic-core pydantic-settings plotly annotated-types python-dotenv typing-inspection \
        typing-extensions h2 hpack hyperframe
    rm -rf "$dir/gsite" && python3 -m pip install -q --no-deps --no-compile --target "$dir/gsite" "$dir"/gpu/*.whl
    rm -rf "$dir"/gsite/nvidia/*/include "$dir/gsite/nvidia/cublas/lib/libnvblas.so.12" "$dir/gsite/nvidia/__init__.py"
    tar -cf - -C "$dir/gsite" . | xz -6 -T0 > "$dir/gsite.tar.xz"
    sha256sum "$dir/gsite.tar.xz" | cut -d' ' -f1 > "$dir/gsite.sha256"
    split -b 58M -d -a 2 "$dir/gsite.tar.xz" "$dir/parts/part"
    rm -rf "$dir/gsite" "$dir/gpu" "$dir/gsite.tar.xz"
    ls -la "$dir/parts" "$dir/wheels"
elif [[ $cmd == unpack ]]; then
    cat "$dir"/parts/part* > /tmp/gsite.tar.xz
    echo "$(cat "$dir/gsite.sha256")  /tmp/gsite.tar.xz" | sha256sum -c
    mkdir -p /tmp/gsite && tar -xJf /tmp/gsite.tar.xz -C /tmp/gsite && rm /tmp/gsite.tar.xz
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site "$dir"/wheels/*.whl
    # pack dropped nvidia/__init__.py, so the CUDA 12 libraries join the image's `nvidia` namespace
    # package (were the image's a regular package, it would hide them and faiss names the missing wheel)
    PYTHONPATH=$PWD:/tmp/site:/tmp/gsite python3 -c "import faiss, torch; print('faiss', faiss.__version__, \
'gpus', faiss.get_num_gpus(), 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
else
    echo "usage: gpu_carry.sh pack|unpack DIR" >&2; exit 2
fi

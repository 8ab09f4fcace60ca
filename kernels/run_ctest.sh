#!/usr/bin/env bash
# Configure, build (libtorch op library + Philox test) and run ctest in a temp dir.
# Extra CMake flags via FASTREG_CMAKE_ARGS (e.g. "-DFASTREG_CUDA=ON"). ~1 min on 2 cores.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(mktemp -d "${TMPDIR:-/tmp}/fastreg-ctest.XXXXXX")"
trap 'rm -rf "$build"' EXIT
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
python="$(command -v python || command -v python3)"
# shellcheck disable=SC2086
cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DFASTREG_PYTHON="$python" ${FASTREG_CMAKE_ARGS:-}
cmake --build "$build" -j "${JOBS:-2}"
ctest --test-dir "$build" --output-on-failure

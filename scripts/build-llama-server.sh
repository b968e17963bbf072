#!/usr/bin/env bash
# Builds llama.cpp's llama-server (CPU) from the llama.cpp git bundle shipped inside the npm
# package node-llama-cpp, and caches the binary outside the clone. Prints the binary's path.
#   scripts/build-llama-server.sh            # CPU build (cached)
#   LLAMA_CUDA_ARCHS="80;86;89;90" scripts/build-llama-server.sh   # CUDA build (Dockerfile.cuda)
#   LLAMA_CMAKE_EXTRA="-DGGML_CUDA_FA=OFF" ...                      # extra cmake flags (word-split)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

flavor=cpu
[ -n "${LLAMA_CUDA_ARCHS:-}" ] && flavor="cuda-${LLAMA_CUDA_ARCHS//;/-}"
extra=()
if [ -n "${LLAMA_CMAKE_EXTRA:-}" ]; then
	read -r -a extra <<<"$LLAMA_CMAKE_EXTRA"
	flavor="$flavor-$(printf '%s' "${extra[*]}" | sha256sum | cut -c1-8)"
fi
dest="$SLUICE_CACHE/engines/llama-server-$LLAMA_NPM_VERSION-$flavor"
if [ -x "$dest/llama-server" ]; then
	echo "$dest/llama-server"
	exit 0
fi

src=$("$here/fetch-llama-src.sh")
[ -z "${LLAMA_CUDA_ARCHS:-}" ] && need_apt cmake g++ git
command -v cmake >/dev/null || { log "cmake is required"; exit 1; }

build="$SLUICE_CACHE/build/llama-$LLAMA_NPM_VERSION-$flavor"
jobs=${JOBS:-$(nproc)}
cuda_flags=()
if [ -n "${LLAMA_CUDA_ARCHS:-}" ]; then
	# FA kernels for every quant type multiply the compile time; the default set covers F16 KV.
	cuda_flags=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$LLAMA_CUDA_ARCHS" -DGGML_CUDA_FA_ALL_QUANTS=OFF)
fi
mkdir -p "$SLUICE_CACHE/build"
log "building llama-server ($flavor, -j$jobs); the first build takes several minutes"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_SERVER=ON \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
	-DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF "${cuda_flags[@]}" "${extra[@]}" >"$build.cmake.log" 2>&1 ||
	{ tail -30 "$build.cmake.log" >&2; exit 1; }
cmake --build "$build" -j"$jobs" --target llama-server >"$build.log" 2>&1 ||
	{ tail -40 "$build.log" >&2; exit 1; }
mkdir -p "$dest"
cp "$build/bin/llama-server" "$dest/llama-server.tmp"
mv "$dest/llama-server.tmp" "$dest/llama-server"
rm -rf "$build"
log "llama-server ready: $dest/llama-server"
echo "$dest/llama-server"

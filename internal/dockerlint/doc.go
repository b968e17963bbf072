// Package dockerlint holds tests only: they check Dockerfile.cuda without a Docker engine
// (none runs on the development and CI machines), with BuildKit's own Dockerfile parser
// (github.com/moby/buildkit/frontend/dockerfile); they also run the container entrypoint
// (scripts/docker-entrypoint.sh) against a stand-in sluice and parse the config the image
// ships (scripts/runpod/sluice.yaml) with the config package.
//
// What they assert: the file parses with no parser or linter warnings and passes a port
// of the other checks `docker build --check` makes; the stages are source, llama, go and
// runtime, in that order, on the expected base images; every COPY --from names an earlier
// stage and every COPY from the build context exists and is not excluded by .dockerignore;
// each stage runs the repository's own build scripts (scripts/fetch-llama-src.sh,
// scripts/build-llama-server.sh with LLAMA_CUDA_ARCHS covering sm_80, 86, 89 and 90,
// make build) and copies every script they call; the version pins equal
// scripts/common.sh; the runtime stage is a CUDA runtime image that runs as a non-root
// user with a health check on /healthz, port 8080 and scripts/docker-entrypoint.sh.
//
// What they cannot assert: that the image builds and runs. That needs Docker with
// BuildKit and, to run it, an NVIDIA GPU (scripts/runpod/README.md).
//
// This file is its only non-test file: no package imports it, and it must not grow code
// that production packages would depend on.
package dockerlint

// Package redistest starts real redis-server processes (Debian's redis-server) for tests:
// each on a free loopback port, in a temporary directory, without persistence, killed
// when the test ends.
//
// A missing redis-server FAILS the test (.ci/run installs it). Set
// SLUICE_ALLOW_MISSING_ENGINES=1 to skip such tests instead while iterating on a machine
// without it (never in CI). It must not import other sluice packages.
package redistest

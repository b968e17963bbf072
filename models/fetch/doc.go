// Package fetch downloads model files (GGUF) over HTTP(S) for `sluice fetch-model` and
// the container entrypoint (scripts/docker-entrypoint.sh).
//
// A download streams into a temporary file beside the destination (".NAME.*.part"),
// hashing with SHA-256 as the bytes arrive, and is renamed over the destination only when
// it is complete and the checksum (when given) matches. On any failure (HTTP status other
// than 200, a short body, a stall, a checksum mismatch, a cancelled context) the temporary
// file is removed, so a destination path either holds a whole verified file or nothing.
// An existing destination is kept when its checksum matches (or an error says why not),
// unless Options.Force is set. Interrupted downloads start over: there is no resume.
//
// Progress goes to an io.Writer: a redrawn bar (percent, MB, MB/s, ETA) at most a few
// times a second on a terminal, or one line per 10% when the writer is a log or a pipe;
// plain byte counts when the server sends no Content-Length.
//
// It imports the standard library only and no other sluice package.
package fetch

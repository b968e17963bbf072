// Package batch owns OpenAI's Batch API: uploaded files (/v1/files), batch jobs
// (/v1/batches), their state in an embedded SQLite store beside a directory of files, and
// the runner that works through a job's lines at batch priority.
//
// A job moves validating → in_progress → finalizing → completed (or failed, expired,
// cancelling → cancelled). Each input line is a row with its state; a line's output is
// written in the same transaction that marks it done, so after a crash a job resumes
// with the lines not yet done and none is run twice into the output or lost. A line
// whose request cannot run (bad JSON, wrong url or method, an error answer) becomes an
// entry of the error file, not a failed job.
//
// The runner does not serve requests itself: it hands each line to an Executor (the
// gateway, which runs it through the same router, stages, scheduler and usage
// recording as an HTTP request, at batch priority). The API methods return OpenAI's
// JSON objects and *models.Error values; the gateway maps them to HTTP.
//
// It must not import gateway, scheduler, router, runtime/* or config.
package batch

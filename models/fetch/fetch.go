package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrExists is wrapped by the error Download returns when the destination already exists
// and is neither verified by a matching checksum nor replaced (Options.Force).
var ErrExists = errors.New("fetch: destination exists")

// StatusError is an HTTP answer other than 200 OK.
type StatusError struct {
	URL    string // without query string or credentials
	Code   int
	Status string // e.g. "404 Not Found"
	Body   string // the start of the response body, trimmed
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("fetch: GET %s answered %s", e.URL, e.Status)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// ChecksumError is a download whose SHA-256 is not the expected one. The downloaded
// bytes were discarded.
type ChecksumError struct {
	URL      string
	Expected string
	Got      string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("fetch: checksum mismatch for %s: expected sha256 %s, got %s (download discarded)",
		e.URL, e.Expected, e.Got)
}

// Options says what to download, where, and how to report progress.
type Options struct {
	URL string // http or https
	Out string // destination file; its directory is created when missing
	// SHA256 is the expected digest, 64 hex digits, optionally prefixed "sha256:".
	// Empty: not checked (Result.SHA256 still reports it).
	SHA256 string
	// Force downloads again even when Out exists (and replaces it only on success).
	Force bool

	// Client does the request; nil: a plain http.Client (proxy from the environment,
	// redirects followed, no overall timeout: stalls are caught by StallTimeout).
	Client *http.Client
	// StallTimeout aborts when no response or no body bytes arrive for this long
	// (default 2 minutes).
	StallTimeout time.Duration

	// Progress receives the progress display; nil: silent.
	Progress io.Writer
	// Terminal draws one redrawn bar (carriage returns); false: a line per 10%.
	Terminal bool
	// Redraw is the shortest time between two bar redraws (default 250ms).
	Redraw time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Result describes the file at Out after a successful Download.
type Result struct {
	Path    string
	Size    int64
	SHA256  string // hex digest of the file
	Skipped bool   // Out was already there with the expected checksum; nothing downloaded
	Elapsed time.Duration
}

// errStalled is the cancel cause when StallTimeout passes without data.
type errStalled time.Duration

func (e errStalled) Error() string {
	return fmt.Sprintf("no data for %v", time.Duration(e))
}

// Download fetches o.URL into o.Out, verifying the checksum on the fly. See the package
// documentation for the guarantees about partial files.
func Download(ctx context.Context, o Options) (Result, error) {
	u, want, err := o.check()
	if err != nil {
		return Result{}, err
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	if !o.Force {
		res, done, err := existing(ctx, o.Out, want)
		if done || err != nil {
			return res, err
		}
	}
	dir := filepath.Dir(o.Out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Result{}, fmt.Errorf("fetch: %w", err)
	}

	stall := o.StallTimeout
	if stall <= 0 {
		stall = 2 * time.Minute
	}
	dctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(stall, func() { cancel(errStalled(stall)) })
	defer timer.Stop()
	// fail names what went wrong; a stall or a cancelled ctx beats the transport's error.
	fail := func(what string, err error) error {
		if dctx.Err() != nil {
			err = context.Cause(dctx)
		}
		return fmt.Errorf("fetch: %s: %w", what, err)
	}

	req, err := http.NewRequestWithContext(dctx, http.MethodGet, o.URL, nil)
	if err != nil {
		return Result{}, fmt.Errorf("fetch: %w", err)
	}
	client := o.Client
	if client == nil {
		client = &http.Client{}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Result{}, fail("GET "+redact(u), unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Result{}, statusError(resp)
	}

	tmp, err := os.CreateTemp(dir, "."+filepath.Base(o.Out)+".*.part")
	if err != nil {
		return Result{}, fmt.Errorf("fetch: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	total := resp.ContentLength
	p := newProgress(o.Progress, o.Terminal, total, o.Redraw, now)
	h := sha256.New()
	body := &stallReader{r: resp.Body, timer: timer, stall: stall}
	n, err := io.CopyBuffer(io.MultiWriter(tmp, h, p), body, make([]byte, 1<<20))
	if err != nil {
		p.abort()
		return Result{}, fail(fmt.Sprintf("download of %s interrupted after %s MB", redact(u), mb(n)), err)
	}
	if total >= 0 && n != total {
		p.abort()
		return Result{}, fmt.Errorf("fetch: download of %s ended after %d of %d bytes", redact(u), n, total)
	}
	got := digest(h)
	if want != "" && got != want {
		p.abort()
		return Result{}, &ChecksumError{URL: redact(u), Expected: want, Got: got}
	}
	timer.Stop()
	if err := finishFile(tmp, o.Out); err != nil {
		p.abort()
		return Result{}, err
	}
	ok = true
	p.finish()
	return Result{Path: o.Out, Size: n, SHA256: got, Elapsed: now().Sub(start)}, nil
}

// statusError describes a non-200 answer, with the start of its body when that is text
// meant for people (Hugging Face says "Entry not found" or why access is refused); HTML
// error pages are left out.
func statusError(resp *http.Response) *StatusError {
	e := &StatusError{URL: redact(resp.Request.URL), Code: resp.StatusCode, Status: resp.Status}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		return e
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	body := []rune(strings.Join(strings.Fields(string(b)), " "))
	if len(body) > 200 {
		body = append(body[:200], '…')
	}
	e.Body = string(body)
	return e
}

// check validates the options and returns the parsed URL and expected digest.
func (o *Options) check() (*url.URL, string, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "", fmt.Errorf("fetch: %q is not an http(s) URL", o.URL)
	}
	if o.Out == "" {
		return nil, "", errors.New("fetch: no destination file")
	}
	want, err := ParseDigest(o.SHA256)
	if err != nil {
		return nil, "", err
	}
	return u, want, nil
}

// ParseDigest normalizes a SHA-256 digest ("sha256:" prefix optional, any case) to
// lowercase hex; empty stays empty.
func ParseDigest(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "sha256:")
	if s == "" {
		return "", nil
	}
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("fetch: sha256 %q is not 64 hex digits", s)
	}
	return s, nil
}

// existing decides what to do with a destination that may already be there: done
// reports that it is there and verified.
func existing(ctx context.Context, path, want string) (res Result, done bool, err error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Result{}, false, nil
	case err != nil:
		return Result{}, false, fmt.Errorf("fetch: %w", err)
	case !st.Mode().IsRegular():
		return Result{}, false, fmt.Errorf("%w: %s is not a regular file", ErrExists, path)
	case want == "":
		return Result{}, false, fmt.Errorf("%w: %s (no checksum to verify it against)", ErrExists, path)
	}
	got, err := fileDigest(ctx, path)
	if err != nil {
		return Result{}, false, err
	}
	if got != want {
		return Result{}, false, fmt.Errorf("%w: %s has sha256 %s, expected %s", ErrExists, path, got, want)
	}
	return Result{Path: path, Size: st.Size(), SHA256: got, Skipped: true}, true, nil
}

// fileDigest hashes a file, stopping early when ctx ends.
func fileDigest(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("fetch: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, ctxReader{ctx, f}, make([]byte, 1<<20)); err != nil {
		return "", fmt.Errorf("fetch: hashing %s: %w", path, err)
	}
	return digest(h), nil
}

func digest(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// finishFile makes the complete temporary file durable and moves it into place.
func finishFile(tmp *os.File, out string) error {
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if d, err := os.Open(filepath.Dir(out)); err == nil {
		_ = d.Sync() // best effort: the rename survives a crash
		d.Close()
	}
	return nil
}

// stallReader pushes the stall deadline back whenever bytes arrive.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	stall time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(s.stall)
	}
	return n, err
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// redact drops credentials and the query string (signed URLs carry tokens there).
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.ForceQuery = false
	c.Fragment = ""
	return c.String()
}

// unwrapURLError drops *url.Error's own "Get "URL": " prefix, which would repeat the
// unredacted URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

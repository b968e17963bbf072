package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// model is the served file: 3 MiB and a bit, so that the copy takes several reads.
func model() []byte {
	b := make([]byte, 3<<20+123)
	for i := range b {
		b[i] = byte(i*7 + i>>11)
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// server serves the model at /model.gguf (with Content-Length), /chunked (without),
// /short (a Content-Length longer than the body) and /stall (half, then nothing); errors
// at /forbidden (403, an HTML page), /long (401, a long text) and anything else (404).
// It counts requests.
func server(t *testing.T, body []byte) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/model.gguf":
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
		case "/chunked":
			for b := body; len(b) > 0; {
				n := min(len(b), 64<<10)
				w.Write(b[:n])
				w.(http.Flusher).Flush()
				b = b[n:]
			}
		case "/short":
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body[:len(body)/2])
		case "/stall":
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case "/forbidden":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte("<html><body>" + strings.Repeat("noise ", 100) + "</body></html>"))
		case "/long":
			http.Error(w, strings.Repeat("x", 300), http.StatusUnauthorized)
		default:
			http.Error(w, "Entry not found", http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// entries lists a directory's names (temporary files included); none when it is missing.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestFetchDownload(t *testing.T) {
	body := model()
	good := sum(body)
	bad := strings.Repeat("0", 64)
	tests := []struct {
		name     string
		path     string
		sha      string
		existing []byte // written to the destination first
		force    bool
		stall    time.Duration
		wantErr  func(error) bool
		want     []byte // the destination's content afterwards (nil: absent)
		skipped  bool
		noHits   bool // the server must not be asked
		progress string
	}{
		{name: "success", path: "/model.gguf", sha: good, want: body, progress: "download: done"},
		{name: "success prefixed uppercase digest", path: "/model.gguf", sha: "sha256:" + strings.ToUpper(good), want: body},
		{name: "success without checksum", path: "/model.gguf", want: body},
		{name: "unknown length", path: "/chunked", sha: good, want: body, progress: "download: done, 3.1 MB"},
		{name: "checksum mismatch", path: "/model.gguf", sha: bad, wantErr: func(err error) bool {
			var ce *ChecksumError
			return errors.As(err, &ce) && ce.Expected == bad && ce.Got == good &&
				strings.Contains(err.Error(), "expected sha256 "+bad+", got "+good)
		}},
		{name: "404", path: "/missing", wantErr: func(err error) bool {
			var se *StatusError
			return errors.As(err, &se) && se.Code == 404 && strings.Contains(err.Error(), "404 Not Found: Entry not found")
		}},
		{name: "403 HTML page left out", path: "/forbidden", wantErr: func(err error) bool {
			var se *StatusError
			return errors.As(err, &se) && se.Code == 403 && strings.HasSuffix(err.Error(), "answered 403 Forbidden")
		}},
		{name: "long body cut", path: "/long", wantErr: func(err error) bool {
			return strings.HasSuffix(err.Error(), "401 Unauthorized: "+strings.Repeat("x", 200)+"…")
		}},
		{name: "short body", path: "/short", wantErr: func(err error) bool {
			return strings.Contains(err.Error(), "interrupted after 1.6 MB")
		}},
		{name: "stall", path: "/stall", stall: 200 * time.Millisecond, wantErr: func(err error) bool {
			return strings.Contains(err.Error(), "no data for 200ms")
		}},
		{name: "bad digest", path: "/model.gguf", sha: "abc", noHits: true, wantErr: func(err error) bool {
			return strings.Contains(err.Error(), "not 64 hex digits")
		}},
		{name: "existing verified is kept", path: "/model.gguf", sha: good, existing: body, want: body,
			skipped: true, noHits: true},
		{name: "existing without checksum", path: "/model.gguf", existing: []byte("old"), want: []byte("old"),
			noHits: true, wantErr: func(err error) bool {
				return errors.Is(err, ErrExists) && strings.Contains(err.Error(), "no checksum")
			}},
		{name: "existing with another checksum", path: "/model.gguf", sha: good, existing: []byte("old"),
			want: []byte("old"), noHits: true, wantErr: func(err error) bool {
				return errors.Is(err, ErrExists) && strings.Contains(err.Error(), "expected "+good)
			}},
		{name: "existing forced", path: "/model.gguf", sha: good, existing: []byte("old"), force: true, want: body},
		{name: "existing forced bad download keeps old", path: "/model.gguf", sha: bad, existing: []byte("old"),
			force: true, want: []byte("old"), wantErr: func(err error) bool {
				var ce *ChecksumError
				return errors.As(err, &ce)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, hits := server(t, body)
			dir := filepath.Join(t.TempDir(), "models")
			out := filepath.Join(dir, "m.gguf")
			if tc.existing != nil {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(out, tc.existing, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var prog bytes.Buffer
			res, err := Download(context.Background(), Options{URL: srv.URL + tc.path + "?token=secret", Out: out,
				SHA256: tc.sha, Force: tc.force, StallTimeout: tc.stall, Progress: &prog})
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Download: %v", err)
			case tc.wantErr != nil && (err == nil || !tc.wantErr(err)):
				t.Fatalf("Download error = %v, not the expected one", err)
			}
			if err != nil {
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error shows the query string: %v", err)
				}
				if !strings.HasPrefix(err.Error(), "fetch: ") {
					t.Errorf("error %q lacks the fetch: prefix", err)
				}
			}
			got, rerr := os.ReadFile(out)
			switch {
			case tc.want == nil && rerr == nil:
				t.Errorf("destination exists after a failed download (%d bytes)", len(got))
			case tc.want != nil && !bytes.Equal(got, tc.want):
				t.Errorf("destination holds %d bytes (%v), want %d", len(got), rerr, len(tc.want))
			}
			wantNames := []string(nil)
			if tc.want != nil {
				wantNames = []string{"m.gguf"}
			}
			if names := entries(t, dir); !slices.Equal(names, wantNames) {
				t.Errorf("directory holds %q, want %q (a temporary file left behind?)", names, wantNames)
			}
			if tc.noHits && hits.Load() != 0 {
				t.Errorf("server asked %d times, want none", hits.Load())
			}
			if err == nil {
				if res.Skipped != tc.skipped || res.Path != out || res.SHA256 != good || res.Size != int64(len(body)) {
					t.Errorf("result = %+v", res)
				}
				if st, _ := os.Stat(out); st.Mode().Perm() != 0o644 {
					t.Errorf("mode = %v, want 0644", st.Mode().Perm())
				}
			}
			if !strings.Contains(prog.String(), tc.progress) {
				t.Errorf("progress output lacks %q:\n%s", tc.progress, prog.String())
			}
		})
	}
}

// cancelAfterFirstRead cancels the download's context once the first body bytes are in,
// so that the cancellation lands mid-download with a temporary file on disk.
type cancelAfterFirstRead struct {
	cancel context.CancelFunc
	seen   chan []string // the directory's names at the moment of cancelling
	dir    string
}

func (c *cancelAfterFirstRead) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &cancellingBody{ReadCloser: resp.Body, c: c}
	return resp, nil
}

type cancellingBody struct {
	io.ReadCloser
	c    *cancelAfterFirstRead
	done bool
}

func (b *cancellingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 && !b.done {
		b.done = true
		es, _ := os.ReadDir(b.c.dir)
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		b.c.seen <- names
		b.c.cancel()
	}
	return n, err
}

func TestFetchDownloadCancelMidway(t *testing.T) {
	body := model()
	srv, _ := server(t, body)
	dir := t.TempDir()
	out := filepath.Join(dir, "m.gguf")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rt := &cancelAfterFirstRead{cancel: cancel, seen: make(chan []string, 1), dir: dir}
	_, err := Download(ctx, Options{URL: srv.URL + "/stall", Out: out, Client: &http.Client{Transport: rt}})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("Download error = %v, want an interruption by context.Canceled", err)
	}
	during := <-rt.seen
	if len(during) != 1 || !strings.HasPrefix(during[0], ".m.gguf.") || !strings.HasSuffix(during[0], ".part") {
		t.Errorf("while downloading the directory held %q, want one .m.gguf.*.part file", during)
	}
	if names := entries(t, dir); len(names) != 0 {
		t.Errorf("after cancelling the directory holds %q, want nothing", names)
	}
}

func TestFetchParseDigest(t *testing.T) {
	d := strings.Repeat("ab", 32)
	tests := []struct {
		in, want string
		err      bool
	}{
		{"", "", false},
		{d, d, false},
		{"sha256:" + d, d, false},
		{" SHA256:" + strings.ToUpper(d) + "\n", d, false},
		{d[:62], "", true},
		{strings.Repeat("zz", 32), "", true},
	}
	for _, tc := range tests {
		got, err := ParseDigest(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseDigest(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestFetchDownloadRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no scheme", Options{URL: "example.com/m.gguf", Out: "m.gguf"}, "not an http(s) URL"},
		{"ftp", Options{URL: "ftp://example.com/m.gguf", Out: "m.gguf"}, "not an http(s) URL"},
		{"no out", Options{URL: "https://example.com/m.gguf"}, "no destination"},
	}
	for _, tc := range tests {
		_, err := Download(context.Background(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error = %v, want %q", tc.name, err, tc.want)
		}
	}
}

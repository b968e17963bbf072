package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"

	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/models/fetch"
)

// fetchModel downloads a model file with a progress display on stderr and prints
// "<sha256>  <path>" (sha256sum's format) on stdout.
func fetchModel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fetch-model", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rawURL := fs.String("url", "", "http(s) URL of the model file (required)")
	sum := fs.String("sha256", "", "expected SHA-256 (hex, optionally sha256:-prefixed); empty: not checked")
	out := fs.String("out", "", "destination file (default: $SLUICE_CACHE/models/<file name in the URL>)")
	force := fs.Bool("force", false, "download again even when the destination exists")
	quiet := fs.Bool("quiet", false, "no progress display")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("fetch-model: unexpected arguments %q", fs.Args())
	}
	if *rawURL == "" {
		return errors.New("fetch-model: --url is required")
	}
	dest := *out
	if dest == "" {
		u, err := url.Parse(*rawURL)
		name := ""
		if err == nil {
			name = path.Base(u.Path)
		}
		if name == "" || name == "/" || name == "." {
			return fmt.Errorf("fetch-model: the URL names no file; pass --out")
		}
		dest = filepath.Join(config.CacheDir(config.OSEnv), "models", name)
	}
	o := fetch.Options{URL: *rawURL, Out: dest, SHA256: *sum, Force: *force}
	if !*quiet {
		o.Progress, o.Terminal = stderr, isTerminal(stderr)
	}
	res, err := fetch.Download(ctx, o)
	switch {
	case errors.Is(err, fetch.ErrExists) && *sum == "":
		return fmt.Errorf("%w; pass --sha256 to verify it or --force to download it again", err)
	case errors.Is(err, fetch.ErrExists):
		return fmt.Errorf("%w; pass --force to download it again", err)
	case err != nil:
		return err
	}
	if res.Skipped {
		fmt.Fprintf(stderr, "fetch-model: %s is already there and its sha256 matches\n", res.Path)
	}
	fmt.Fprintf(stdout, "%s  %s\n", res.SHA256, res.Path)
	return nil
}

// isTerminal reports whether w is a character device (a terminal) that can redraw a bar.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

package compress

import (
	"strconv"
	"strings"

	"github.com/sluice-llm/sluice/models"
)

// Directive is a request's X-Sluice-Compress header, parsed: "off", "on" (the
// configured target), "ratio=3", "tokens=800", optionally with "force" (compress even
// with tools or a response_format), separated by ';' or ','.
type Directive struct {
	Set    bool // the header was sent
	Off    bool
	Budget Budget // zero: the configured target
	Force  bool
}

// ParseDirective parses the header value. Errors are client errors (400).
func ParseDirective(v string) (Directive, error) {
	d := Directive{Set: true}
	if strings.TrimSpace(v) == "" {
		return Directive{}, nil
	}
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == ',' }) {
		f = strings.TrimSpace(strings.ToLower(f))
		k, val, hasVal := strings.Cut(f, "=")
		k, val = strings.TrimSpace(k), strings.TrimSpace(val)
		switch {
		case f == "":
		case !hasVal && (k == "off" || k == "none" || k == "0" || k == "false"):
			d.Off = true
		case !hasVal && (k == "on" || k == "true" || k == "auto"):
		case !hasVal && k == "force":
			d.Force = true
		case hasVal && k == "ratio":
			r, err := strconv.ParseFloat(val, 64)
			if err != nil || r < 1 || r > 100 {
				return Directive{}, headerError("ratio must be a number from 1 to 100, got %q", val)
			}
			d.Budget.Ratio = r
		case hasVal && k == "tokens":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 {
				return Directive{}, headerError("tokens must be a positive integer, got %q", val)
			}
			d.Budget.Tokens = n
		default:
			return Directive{}, headerError("unknown directive %q (use off, on, ratio=N, tokens=N, force)", f)
		}
	}
	return d, nil
}

func headerError(format string, args ...any) error {
	e := models.InvalidParam("X-Sluice-Compress", "header X-Sluice-Compress: "+format, args...)
	e.Code = "invalid_compress_header"
	return e
}

package gateway_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-llm/sluice/gateway"
)

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMalformedRequestLogsNoKey: a request whose head fasthttp cannot parse must not
// put its bytes (an Authorization header with the client's API key) into sluice's log,
// even at debug level.
func TestMalformedRequestLogsNoKey(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g := startGateway(t, gateway.Options{Logger: log}, 1)
	const secret = "sk-live-0123456789abcdef"
	for _, head := range []string{
		"\x01\x02 /v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer " + secret + "\r\nHost: x\r\n\r\n",
		"POST /v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer " + secret + "\r\nHost: x\r\nContent-Length: x\r\n\r\n",
		"POST /v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer " + secret + "\r\nBad Header\r\n\r\n",
	} {
		c, br := dial(t, g.Addr)
		fmt.Fprint(c, head)
		code, _, _ := rawResponse(t, c, br)
		if code < 400 {
			t.Fatalf("a malformed request got %d", code)
		}
		// The connection closes once the server is done with it (and has logged).
		_, _ = io.Copy(io.Discard, br)
		c.Close()
	}
	if strings.Contains(logs.String(), secret) {
		t.Fatalf("the log holds a client's API key:\n%s", logs.String())
	}
}

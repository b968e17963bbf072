package config

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// Limits protect the server from slow, abusive or simply too many clients
// (server.limits). Every limit has a default; a negative value turns a cap off.
type Limits struct {
	// HeaderTimeout bounds the time from a request's first byte (or from the connection's
	// start) until its headers, and a body of up to 64 KiB, are in (default 10s):
	// slowloris clients are dropped.
	HeaderTimeout time.Duration `yaml:"header_timeout"`
	// BodyTimeout bounds reading a larger (or chunked) body once the headers are in
	// (default 60s).
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// WriteTimeout bounds each write of an answer (default 60s): a client that stops
	// reading for that long is dropped and its engine request cancelled, so a slow
	// reader cannot hold an engine slot. A streamed answer may last longer; it is the
	// stalls that are bounded.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle for that long (default 120s).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConnections caps open client connections (default 4096); more are answered
	// 503 with Retry-After and closed.
	MaxConnections int `yaml:"max_connections"`
	// MaxConcurrentRequests caps inference requests in flight, waiting or running
	// (default 1024); more are answered 429 with Retry-After.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests"`
	// LargeBodyBytes and MaxLargeBodies bound the memory request bodies take: at most
	// MaxLargeBodies requests with a body over LargeBodyBytes (or of unknown length) are
	// read or in flight at once (defaults 1 MiB and 32, so large bodies hold at most
	// 32 × server.max_body_bytes); more are answered 429 with Retry-After.
	LargeBodyBytes int `yaml:"large_body_bytes"`
	MaxLargeBodies int `yaml:"max_large_bodies"`
	// OversizeDrain bounds how much of an oversized or refused body sluice reads and
	// throws away after answering, so that clients which read only after sending see
	// the answer instead of a reset connection (default 64 MiB; larger uploads are cut).
	OversizeDrain int `yaml:"oversize_drain_bytes"`
	// MaxEngineLineBytes bounds one server-sent event from an engine (default 4 MiB): a
	// longer one fails the request instead of growing without bound.
	MaxEngineLineBytes int `yaml:"max_engine_line_bytes"`
}

func (l *Limits) applyDefaults() {
	def := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	defInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	def(&l.HeaderTimeout, 10*time.Second)
	def(&l.BodyTimeout, 60*time.Second)
	def(&l.WriteTimeout, 60*time.Second)
	def(&l.IdleTimeout, 120*time.Second)
	defInt(&l.MaxConnections, 4096)
	defInt(&l.MaxConcurrentRequests, 1024)
	defInt(&l.LargeBodyBytes, 1<<20)
	defInt(&l.MaxLargeBodies, 32)
	defInt(&l.OversizeDrain, 64<<20)
	defInt(&l.MaxEngineLineBytes, 4<<20)
}

func (l *Limits) validate(bad func(path, format string, args ...any)) {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"header_timeout", l.HeaderTimeout}, {"body_timeout", l.BodyTimeout}, {"write_timeout", l.WriteTimeout}, {"idle_timeout", l.IdleTimeout}} {
		if d.v < time.Millisecond {
			bad("server.limits."+d.name, "must be at least 1ms, got %v", d.v)
		}
	}
	if l.LargeBodyBytes < 1024 {
		bad("server.limits.large_body_bytes", "must be at least 1024, got %d", l.LargeBodyBytes)
	}
	if l.MaxEngineLineBytes < 4096 {
		bad("server.limits.max_engine_line_bytes", "must be at least 4096, got %d", l.MaxEngineLineBytes)
	}
	if l.OversizeDrain < 0 {
		bad("server.limits.oversize_drain_bytes", "must not be negative (0: the default)")
	}
}

// IsLoopback reports whether listen (host:port) accepts connections from this machine
// only: a loopback IP or "localhost". An empty host (all interfaces), 0.0.0.0, ::, any
// other address or host name is public.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckExposure refuses to serve a public address without API keys unless allowed
// (server.allow_public_without_keys or --insecure-public). It returns a notice for the
// start-up output: why a key-less server is reachable from this machine only, or a
// warning when allowed to be public. storeKeys says the key store holds keys (they count as
// well as the configured ones).
func (s *Server) CheckExposure(storeKeys bool) (notice string, err error) {
	if len(s.APIKeys) > 0 || storeKeys {
		return "", nil
	}
	if IsLoopback(s.Listen) {
		return fmt.Sprintf("no API keys configured: sluice accepts connections from this machine only (%s); "+
			"set server.api_keys to serve other hosts", s.Listen), nil
	}
	if !s.AllowPublicWithoutKeys {
		return "", fmt.Errorf("refusing to serve %s without API keys: anyone who can reach it could use the engines; "+
			"set server.api_keys (e.g. [\"${SLUICE_API_KEY}\"]), listen on 127.0.0.1, or pass --insecure-public "+
			"(server.allow_public_without_keys: true) if something in front of sluice authenticates clients", s.Listen)
	}
	return fmt.Sprintf("WARNING: serving %s without API keys (allowed by --insecure-public or "+
		"server.allow_public_without_keys): anyone who can reach it can use the engines", s.Listen), nil
}

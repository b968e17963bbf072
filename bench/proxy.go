package bench

import (
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// nullProxy is a do-nothing reverse proxy: a fasthttp server whose handler forwards the
// request as it came and the response as it comes back, streaming the body through. It is
// the fair baseline for a fasthttp gateway: the same server, the same hop, no work.
type nullProxy struct {
	srv  *fasthttp.Server
	hc   *fasthttp.HostClient
	ln   net.Listener
	done chan struct{}
}

func startNullProxy(name, upstreamAddr string) (*nullProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &nullProxy{ln: ln, done: make(chan struct{}), hc: newProxyClient(upstreamAddr)}
	// The server's settings match the gateway's (gateway.New), so only the handler differs.
	p.srv = &fasthttp.Server{
		Handler:               p.handle,
		ReadTimeout:           60 * time.Second,
		IdleTimeout:           120 * time.Second,
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
	}
	goLabeled(name, func() {
		_ = p.srv.Serve(ln)
		close(p.done)
	})
	return p, nil
}

// newProxyClient is the null proxy's client to the engine: response bodies stream through.
func newProxyClient(upstreamAddr string) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                upstreamAddr,
		MaxConns:            4096,
		MaxIdleConnDuration: time.Minute,
		ReadTimeout:         time.Minute,
		WriteTimeout:        time.Minute,
		StreamResponseBody:  true,
	}
}

func (p *nullProxy) addr() string { return p.ln.Addr().String() }

// handle forwards ctx's request. With StreamResponseBody the engine's body is handed to
// the server as a stream: fasthttp writes it to the client as it arrives and closes it
// (returning the upstream connection) when done.
func (p *nullProxy) handle(ctx *fasthttp.RequestCtx) {
	if err := p.hc.Do(&ctx.Request, &ctx.Response); err != nil {
		ctx.Response.Reset()
		ctx.Error(`{"error":{"message":"null proxy: upstream failed"}}`, fasthttp.StatusBadGateway)
	}
}

func (p *nullProxy) close() {
	_ = p.srv.Shutdown()
	<-p.done
	p.hc.CloseIdleConnections()
}

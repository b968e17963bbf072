// Package upstream is the HTTP/1.1 client that backends use to talk to engines and cloud
// APIs. It keeps a pool of keep-alive connections per base URL and ties every call to a
// context: cancelling the context interrupts the connection at once (whether the call is
// waiting for headers or streaming a body), so an engine sees the disconnect and frees
// its slot. It reuses fasthttp's request/response codecs and adds no goroutine per call.
//
// It must not import gateway, scheduler or router.
package upstream

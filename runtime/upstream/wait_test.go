//go:build linux

package upstream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// sseServer answers one request on a real TCP connection with a chunked event stream:
// each value sent on writes is written in one write, each of its strings one HTTP chunk.
// Closing writes closes the connection.
func sseServer(t *testing.T) (addr string, writes chan<- []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := make(chan []string)
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")); err != nil {
			return
		}
		for chunks := range w {
			var b []byte
			for _, s := range chunks {
				b = fmt.Appendf(b, "%x\r\n%s\r\n", len(s), s)
			}
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	}()
	return ln.Addr().String(), w
}

// waitReturns runs s.WaitReady and reports whether it returned within d; the
// goroutine is done when done is closed.
func waitReturns(s *SSE, d time.Duration) (ok bool, done <-chan struct{}) {
	c := make(chan struct{})
	go func() { s.WaitReady(); close(c) }()
	select {
	case <-c:
		return true, c
	case <-time.After(d):
		return false, c
	}
}

func mustReturn(t *testing.T, s *SSE, why string) {
	t.Helper()
	if ok, _ := waitReturns(s, 5*time.Second); !ok {
		t.Fatal(why)
	}
}

func openSSE(t *testing.T, ctx context.Context, addr string) (*Call, *SSE) {
	t.Helper()
	c, err := New("http://"+addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	c.Prepare(req, fasthttp.MethodPost, "/v1/chat/completions")
	req.SetBodyString(`{}`)
	call, err := c.Do(ctx, req, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(call.Release)
	s := c.SSE(call)
	t.Cleanup(s.Release)
	return call, s
}

func nextData(t *testing.T, s *SSE, want string) {
	t.Helper()
	_, data, err := s.Next()
	if err != nil || string(data) != want {
		t.Fatalf("event %q, %v; want %q", data, err, want)
	}
}

// TestWaitReady: WaitReady on a streamed body returns when there is something to read
// and reads nothing of it; it blocks while the engine sends nothing; it never waits on
// the socket for bytes already buffered (in the SSE reader, or in the connection's reader
// behind it), and it returns when the engine closes the connection.
func TestWaitReady(t *testing.T) {
	addr, writes := sseServer(t)
	_, s := openSSE(t, context.Background(), addr)

	writes <- []string{"data: 1\n\n"}
	mustReturn(t, s, "WaitReady did not return with an event sent")
	nextData(t, s, "1")

	if ok, done := waitReturns(s, 100*time.Millisecond); ok {
		t.Fatal("WaitReady returned with nothing sent")
	} else {
		writes <- []string{"data: 2\n\n"}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("WaitReady did not return when the event came")
		}
	}
	nextData(t, s, "2")

	// Two events in one chunk: the second is in the SSE reader's buffer.
	writes <- []string{"data: 3\n\ndata: 4\n\n"}
	nextData(t, s, "3")
	mustReturn(t, s, "WaitReady waited on the socket with an event in the SSE reader")
	nextData(t, s, "4")

	// Two chunks in one write: both reach the SSE reader in one read (chunked.go).
	writes <- []string{"data: 5\n\n", "data: 6\n\n"}
	nextData(t, s, "5")
	mustReturn(t, s, "WaitReady waited on the socket with the second chunk read")
	nextData(t, s, "6")

	close(writes)
	mustReturn(t, s, "WaitReady did not return when the engine closed the connection")
	if _, _, err := s.Next(); err == nil {
		t.Fatal("no error after the engine closed the stream")
	}
}

// TestWaitReadyCancel: cancelling the call's context wakes a WaitReady, and the next
// read reports the cancellation.
func TestWaitReadyCancel(t *testing.T) {
	addr, writes := sseServer(t)
	defer close(writes)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, s := openSSE(t, ctx, addr)
	done := make(chan struct{})
	go func() { s.WaitReady(); close(done) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WaitReady did not return after the call was cancelled")
	}
	if _, _, err := s.Next(); err == nil {
		t.Fatal("no error reading a cancelled call")
	}
}

// TestWaitReadyAfterTheEnd: the engine's last event and the body's end (the last chunk)
// arrive together, without [DONE], on a connection the engine keeps open. Once the last
// event is read, WaitReady returns at once (the next read reports the end) instead of
// waiting on the idle connection.
func TestWaitReadyAfterTheEnd(t *testing.T) {
	addr, writes := sseServer(t)
	defer close(writes)
	_, s := openSSE(t, context.Background(), addr)
	writes <- []string{"data: 1\n\n"}
	nextData(t, s, "1")
	writes <- []string{"data: last\n\n", ""} // "": the last chunk, in the same write
	nextData(t, s, "last")
	mustReturn(t, s, "WaitReady waited on the idle connection after the body's end")
	if _, _, err := s.Next(); err != io.EOF {
		t.Fatalf("after the last event: %v, want EOF", err)
	}
}

// TestWaitReadyBuffersBack: a stream that waits for the engine with nothing buffered
// gives its connection's read buffer back to the client's pool for the wait, and reads
// on with one attached after it (the chunked decoder's too), also when the engine's
// next write ends inside an HTTP chunk or inside an event. A connection idle in the
// pool holds no buffer either, and is reused.
func TestWaitReadyBuffersBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw := make(chan string)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for range 2 { // two requests on the kept-alive connection
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				return
			}
			if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")); err != nil {
				return
			}
			for s := range raw {
				if s == "" {
					break
				}
				if _, err := c.Write([]byte(s)); err != nil {
					return
				}
			}
		}
	}()
	c, err := New("http://"+ln.Addr().String(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for round := range 2 {
		req := fasthttp.AcquireRequest()
		c.Prepare(req, fasthttp.MethodPost, "/v1/chat/completions")
		req.SetBodyString(`{}`)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		call, err := c.Do(ctx, req, true)
		fasthttp.ReleaseRequest(req)
		if err != nil {
			t.Fatal(err)
		}
		if round == 1 && c.Dials() != 1 {
			t.Fatalf("%d dials, want the connection kept alive", c.Dials())
		}
		s := c.SSE(call)
		ch := call.body.(*chunked)
		step := func(send string, wantEmpty bool) {
			t.Helper()
			ok, done := waitReturns(s, 50*time.Millisecond)
			if ok {
				t.Fatal("WaitReady returned with nothing sent")
			}
			raw <- send
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("WaitReady did not return when the engine sent")
			}
			if call.cn.br == nil || ch.br != call.cn.br || s.br == nil {
				t.Fatal("a reader is missing after the wait")
			}
			if got := call.cn.br.Buffered() == 0; got != wantEmpty {
				t.Fatalf("connection reader empty = %v", got)
			}
		}
		step("9\r\ndata: 1\n\n\r\n", true) // one whole chunk: nothing buffered yet
		nextData(t, s, "1")
		step("9\r\n", true) // a chunk's header only
		raw <- "data: 2\n\n\r\n"
		nextData(t, s, "2")
		step("9\r\ndata:", true)
		raw <- " 3\n\n\r\n"
		nextData(t, s, "3")
		step("0\r\n\r\n", true)
		if _, _, err := s.Next(); err != io.EOF {
			t.Fatalf("after the last chunk: %v, want EOF", err)
		}
		raw <- ""
		s.Release()
		call.Release()
		c.mu.Lock()
		idle := len(c.idle)
		var held bool
		if idle == 1 {
			held = c.idle[0].br != nil
		}
		c.mu.Unlock()
		if idle != 1 || held {
			t.Fatalf("idle connections %d, holding a read buffer %v; want 1, false", idle, held)
		}
	}
	close(raw)
}

package upstream

import (
	"bufio"
	"syscall"
)

// WaitReady returns when the streamed body has bytes to read: some already buffered,
// or the connection readable (data, its end, or an error). It reads nothing. It
// returns at once when it cannot tell (a TLS connection, a body of fixed length whose
// first bytes fasthttp may hold, a call already ended), and early when the call's
// deadline passes or it is cancelled: the next Read then reports that.
func (call *Call) WaitReady() {
	ch := call.waits()
	if ch == nil {
		return
	}
	// Nothing is buffered: the read buffer goes back to the client's pool for the wait
	// (a stream spends most of its life here when the engine is slow), and the decoder
	// reads on with the one attached after it.
	if call.c.detach(call.cn) {
		ch.br = nil
		defer func() {
			call.c.attach(call.cn)
			ch.br = call.cn.br
		}()
	}
	waitReadable(call.cn.raw)
}

// waits returns the call's chunked decoder when WaitReady would wait on the connection,
// else nil: WaitReady returns at once on a call that has ended or failed, on TLS (its
// reader may hold decrypted bytes the descriptor does not show), on a body that is not
// chunked (fasthttp may hold its first bytes), and when bytes are already buffered.
func (call *Call) waits() *chunked {
	if call.c == nil || call.body == nil || call.eof || call.failed || call.cn == nil || call.cn.raw == nil {
		return nil
	}
	if call.cn.br.Buffered() > 0 || call.Resp.Header.ContentLength() != -1 {
		return nil // only a chunked body is read from the connection's reader alone
	}
	ch, ok := call.body.(*chunked)
	if !ok || ch.eof || ch.err != nil {
		return nil // the body has ended: the idle connection has nothing more to send
	}
	return ch
}

// ReadReady reports whether a Read of the body now returns without waiting for the
// engine (data, the end or an error). Only a chunked body read by sluice's own decoder
// can tell; any other says false.
func (call *Call) ReadReady() bool {
	if call.body == nil || call.eof {
		return true
	}
	ch, ok := call.body.(*chunked)
	return ok && ch.ReadReady()
}

// WaitReady returns when the next event may be read without waiting long: a line
// already buffered, or the underlying reader's WaitReady.
//
// A pooled reader's buffer, empty then, goes back to the pool for the wait.
func (s *SSE) WaitReady() {
	if s.br == nil || s.br.Buffered() > 0 {
		return
	}
	w, ok := s.src.(interface{ WaitReady() })
	if !ok {
		return
	}
	if call, ok := s.src.(*Call); ok && call.waits() == nil {
		return // the call would return at once: nothing to wait for
	}
	if s.pool != nil {
		s.br.Reset(nil)
		s.pool.Put(s.br)
		s.br = nil
		defer func() {
			br, _ := s.pool.Get().(*bufio.Reader)
			if br == nil {
				br = bufio.NewReaderSize(s.src, sseBuffer)
			} else {
				br.Reset(s.src)
			}
			s.br = br
		}()
	}
	w.WaitReady()
}

// rawConn is the connection's descriptor for waiting on it, for plain TCP only.
func rawConn(nc any) syscall.RawConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

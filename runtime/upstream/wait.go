package upstream

import "syscall"

// WaitReady returns when the streamed body has bytes to read: some already buffered,
// or the connection readable (data, its end, or an error). It reads nothing. It
// returns at once when it cannot tell (a TLS connection, a body of fixed length whose
// first bytes fasthttp may hold, a call already ended), and early when the call's
// deadline passes or it is cancelled: the next Read then reports that.
func (call *Call) WaitReady() {
	if call.c == nil || call.body == nil || call.eof || call.failed || call.cn == nil || call.cn.raw == nil {
		return
	}
	if call.cn.br.Buffered() > 0 || call.Resp.Header.ContentLength() != -1 {
		return // only a chunked body is read from the connection's reader alone
	}
	if ch, ok := call.body.(*chunked); ok && (ch.eof || ch.err != nil) {
		return // the body has ended: the idle connection has nothing more to send
	}
	waitReadable(call.cn.raw)
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
func (s *SSE) WaitReady() {
	if s.br == nil || s.br.Buffered() > 0 {
		return
	}
	if w, ok := s.src.(interface{ WaitReady() }); ok {
		w.WaitReady()
	}
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

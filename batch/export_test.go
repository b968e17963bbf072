package batch

// CrashAt makes m's runner stop dead at point ("validate": before the validation
// commits; "finalize": after the output files are written, before the commit that
// names them), as a crash there would; the channel is closed when it happens.
func CrashAt(m *Manager, point string) <-chan struct{} {
	m.crashAt, m.crashed = point, make(chan struct{})
	return m.crashed
}

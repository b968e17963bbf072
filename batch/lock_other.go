//go:build !unix

package batch

import (
	"os"
	"path/filepath"
)

// lockDir opens dir/lock; without flock, nothing stops a second process.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
}

package gpu

import (
	"fmt"

	gguf "github.com/gpustack/gguf-parser-go"
)

// ModelParameters returns how many parameters the GGUF model at path has (from its
// tensors), for choosing a cloud model of the same class to compare costs with.
func ModelParameters(path string) (float64, error) {
	gf, err := gguf.ParseGGUFFile(path, gguf.SkipLargeMetadata())
	if err != nil {
		return 0, fmt.Errorf("gguf %s: %w", path, err)
	}
	return float64(gf.ModelParameters), nil
}

package compress

import (
	"context"
	"os"
	"testing"
)

func TestRunSmall(t *testing.T) {
	p := os.Getenv("SQUAD")
	if p == "" {
		p = "../../../shared/data/compress/xquad.en.json"
	}
	rep, err := Run(context.Background(), Config{SQuAD: p, Ratios: []float64{2, 3, 5}})
	if err != nil {
		t.Fatal(err)
	}
	rep.WriteTable(os.Stdout)
}

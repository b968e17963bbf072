package main

import (
	"context"
	"errors"
	"io"
)

func fetchModel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("fetch-model: not built yet")
}

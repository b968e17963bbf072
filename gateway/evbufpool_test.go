package gateway_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-llm/sluice/gateway"
)

// TestSlowStreamsShareEventBuffers: slow streams at once, on both APIs, each giving
// its event buffer back to the pool while it waits for the engine and taking one again:
// every answer is whole, carries only its own id, and nothing is left open.
func TestSlowStreamsShareEventBuffers(t *testing.T) {
	const n = 16
	g := startGateway(t, gateway.Options{}, n)
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for _, api := range streamAPIs {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, b := post(t, g.URL+api.path, strings.Replace(api.body, "%s", "slow 12", 1))
				id := resp.Header.Get("X-Request-Id")
				body := string(b)
				words := strings.Count(body, strings.Replace(api.delta, "%s", "word ", 1))
				ids := strings.Count(body, id)
				wantIDs := 1 // message_start
				if api.path == "/v1/chat/completions" {
					wantIDs = strings.Count(body, "data: {") // every chunk
				}
				if resp.StatusCode != 200 || words != 12 || !strings.Contains(body, api.end) || id == "" || ids != wantIDs {
					errs <- fmt.Errorf("%s %s: status %d, %d words, %d of %d ids:\n%s", api.path, id, resp.StatusCode, words, ids, wantIDs, body)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	g.slotFree(t)
}

package e2e

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestLedgerSurvivesKill9: a real `sluice serve` (managed llama-server, the tiny model)
// answers the official Go SDK from 6 clients, streams and not; it is killed with SIGKILL
// mid-load and started again on the same ledger. Every request whose answer the client
// had in full before the kill is in the ledger. The store's batches are made too rare
// to happen before the kill, so every one of those records comes from the journal.
func TestLedgerSurvivesKill9(t *testing.T) {
	bin := buildSluice(t)
	dir := t.TempDir()
	cfg := ledgerConfig(t, dir, "", "    - sk-crash-test\n", "  batch_interval: 1h\n  batch_size: 100000\n")
	p := startSluice(t, bin, cfg, dir)

	var (
		mu       sync.Mutex
		killed   bool
		finished []string // X-Request-Id of answers the client had in full before the kill
		after    int      // answers completed once the kill was decided
	)
	done := make(chan struct{}, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := oai.NewClient(option.WithBaseURL(p.URL+"/v1/"), option.WithAPIKey("sk-crash-test"), option.WithMaxRetries(0),
		option.WithHeader("X-Sluice-Feature", "crash-test"))
	var wg sync.WaitGroup
	var cut, failed int
	for c := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				var resp *http.Response
				params := oai.ChatCompletionNewParams{Model: "tiny", MaxTokens: oai.Int(12),
					Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("Tell me about rivers, client " + strconv.Itoa(c))},
					User:     oai.String("user-" + strconv.Itoa(c))}
				var err error
				if (c+i)%2 == 0 {
					s := client.Chat.Completions.NewStreaming(ctx, params, option.WithResponseInto(&resp))
					finish := ""
					for s.Next() {
						if ch := s.Current(); len(ch.Choices) > 0 && ch.Choices[0].FinishReason != "" {
							finish = ch.Choices[0].FinishReason
						}
					}
					if err = s.Err(); err == nil && finish == "" {
						err = errors.New("stream ended without a finish reason")
					}
				} else {
					_, err = client.Chat.Completions.New(ctx, params, option.WithResponseInto(&resp))
				}
				mu.Lock()
				switch {
				case err == nil && !killed:
					finished = append(finished, resp.Header.Get("X-Request-Id"))
				case err == nil:
					after++
				case killed:
					cut++ // in flight when sluice died
				default:
					failed++
				}
				isKilled := killed
				mu.Unlock()
				if err != nil && isKilled {
					return
				}
				done <- struct{}{}
			}
		}()
	}
	for range 60 {
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			t.Fatal("requests stalled before the kill")
		}
	}
	mu.Lock()
	killed = true
	acked := append([]string(nil), finished...)
	p.kill9(t) // while holding mu: no answer can be counted as finished after this point
	mu.Unlock()
	cancel()
	go func() {
		for range done {
		}
	}()
	wg.Wait()
	close(done)
	if failed > 0 {
		t.Fatalf("%d requests failed before the kill", failed)
	}
	db := openLedgerDB(t, dir)
	var before int
	if err := db.QueryRow(`SELECT count(*) FROM records`).Scan(&before); err != nil {
		t.Fatal(err)
	}

	// Start again on the same ledger: the dead process's journal is replayed at once.
	p2 := startSluice(t, bin, cfg, dir)
	replayed := 0
	if m := regexp.MustCompile(`stored the records of a stopped process's journal"? records=(\d+)`).FindStringSubmatch(p2.stderr.String()); m != nil {
		replayed, _ = strconv.Atoi(m[1])
	}
	ids := map[string]bool{}
	rows, err := db.Query(`SELECT request_id, status, key_id, feature, end_user, prompt_tokens, completion_tokens, cost_usd FROM records`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, key, feature, user string
		var status, pt, ct int
		var usd float64
		if err := rows.Scan(&id, &status, &key, &feature, &user, &pt, &ct, &usd); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
		if status == 200 && (key == "" || feature != "crash-test" || user == "" || pt == 0 || ct == 0 || usd <= 0) {
			t.Errorf("record %s incomplete: key %q feature %q user %q tokens %d/%d cost %g", id, key, feature, user, pt, ct, usd)
		}
	}
	rows.Close()
	missing := 0
	for _, id := range acked {
		if id == "" || !ids[id] {
			missing++
		}
	}
	t.Logf("%d answers finished before kill -9, %d cut short by it; in the store before the restart %d records, "+
		"replayed from the journal %d; after: %d records, %d acknowledged answers missing", len(acked), cut, before, replayed, len(ids), missing)
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged requests are not in the ledger", missing, len(acked))
	}
	if before != 0 || replayed < len(acked) {
		t.Errorf("the store had %d records before the restart and %d were replayed: the test did not exercise the journal", before, replayed)
	}
	if cut == 0 {
		t.Logf("no request was in flight at the kill (the kill still came mid-load)")
	}
	_ = p2
}

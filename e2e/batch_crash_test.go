package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestBatchSurvivesKill9: a real `sluice serve` (managed llama-server, ledger, the Batch
// API) runs a batch created by the npm SDK; sluice is killed with SIGKILL mid-batch and
// started again on the same directories. The batch resumes: the lines committed before
// the kill do not run again, the others do, the output file has every line exactly
// once, and the ledger has every line under the batch's feature (a line that was in
// flight at the kill may be there twice: it ran twice).
func TestBatchSurvivesKill9(t *testing.T) {
	if _, err := os.Stat(filepath.Join("js", "node_modules", "openai")); err != nil {
		t.Fatalf("npm packages missing (%v): run `make npm` (scripts/npm-deps.sh)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: %v", err)
	}
	const lines, concurrency, key = 80, 2, "sk-batch-crash"
	bin := buildSluice(t)
	dir := t.TempDir()
	cfg := ledgerConfig(t, dir, "", "    - "+key+"\n", fmt.Sprintf("batch: {concurrency: %d}\n", concurrency))
	p := startSluice(t, bin, cfg, dir)

	sdk := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, append([]string{"batch-crash.mjs"}, args...)...)
		cmd.Dir = "js"
		cmd.Env = append(os.Environ(), "SLUICE_BASE_URL="+p.URL+"/v1", "SLUICE_API_KEY="+key)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node batch-crash.mjs %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	var created struct{ Batch string }
	if err := json.Unmarshal(sdk("create", strconv.Itoa(lines)), &created); err != nil || created.Batch == "" {
		t.Fatalf("create: %v", err)
	}

	// Kill once some lines are done and others still to do.
	done := 0
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for done < 8 {
		<-poll.C
		done = getBatch(t, p.URL, key, created.Batch).RequestCounts.Completed
	}
	p.kill9(t)
	if done >= lines {
		t.Fatalf("the batch finished before the kill (%d lines): nothing to test", done)
	}

	p = startSluice(t, bin, cfg, dir)
	b := getBatch(t, p.URL, key, created.Batch)
	committed := b.RequestCounts.Completed
	if b.Status != "in_progress" || committed < done || committed >= lines || b.RequestCounts.Total != lines {
		t.Fatalf("after the restart: %+v (%d done before the kill)", b, done)
	}
	var final batchJSON
	if err := json.Unmarshal(sdk("finish", created.Batch, strconv.Itoa(lines)), &final); err != nil {
		t.Fatal(err)
	}
	if final.RequestCounts.Completed != lines || final.RequestCounts.Failed != 0 {
		t.Fatalf("final batch: %+v", final)
	}
	// The new process ran exactly the lines not committed before the kill.
	if ran := scrapeValue(t, p.URL, `sluice_batch_lines_total{outcome="completed"}`); ran != float64(lines-committed) {
		t.Errorf("after the restart %v lines ran, want %d (%d were done before the kill)", ran, lines-committed, committed)
	}
	// Every line is priced in the ledger under the batch's feature.
	var report struct {
		Data []struct {
			Group    map[string]string `json:"group"`
			Requests int               `json:"requests"`
			Errors   int               `json:"errors"`
		} `json:"data"`
	}
	body := httpGet(t, p.URL+"/v1/usage?group_by=feature&feature=batch:"+created.Batch, key)
	if err := json.Unmarshal(body, &report); err != nil || len(report.Data) != 1 {
		t.Fatalf("usage report: %s %v", body, err)
	}
	if r := report.Data[0]; r.Group["feature"] != "batch:"+created.Batch || r.Requests < lines || r.Requests > lines+concurrency || r.Errors != 0 {
		t.Errorf("ledger: %+v, want %d to %d requests of feature batch:%s", r, lines, lines+concurrency, created.Batch)
	}
	t.Logf("killed with %d lines done (%d committed); the restart ran %d; the ledger has %d", done, committed, lines-committed, report.Data[0].Requests)
}

type batchJSON struct {
	ID            string `json:"id"`
	Status        string `json:"status"`
	RequestCounts struct {
		Total, Completed, Failed int
	} `json:"request_counts"`
}

func httpGet(t *testing.T, url, key string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

func getBatch(t *testing.T, base, key, id string) batchJSON {
	t.Helper()
	var b batchJSON
	if err := json.Unmarshal(httpGet(t, base+"/v1/batches/"+id, key), &b); err != nil {
		t.Fatal(err)
	}
	return b
}

// scrapeValue reads one sample of sluice's /metrics (name with its labels, as printed).
func scrapeValue(t *testing.T, base, sample string) float64 {
	t.Helper()
	body := httpGet(t, base+"/metrics", "")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in /metrics", sample)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

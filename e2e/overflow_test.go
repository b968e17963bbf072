package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/models"
)

func post(t *testing.T, url, key, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func chatBody(model, user string, stream bool) string {
	return fmt.Sprintf(`{"model":%q,"user":%q,"stream":%v,"max_tokens":4,"messages":[{"role":"user","content":"Say hi."}]}`, model, user, stream)
}

// TestOverflowResidency: under capacity everything runs on the local llama-server;
// with its only slot taken and a 1 ms SLO, the scheduler refuses as saturated and each
// key's request goes to a cloud its residency policy allows (EU key: the EU cloud;
// unrestricted: the cheaper US one; local-only: 429 as before), and a failing cloud
// falls back to the next.
func TestOverflowResidency(t *testing.T) {
	st := startRoutedStack(t, time.Millisecond)
	url := st.URL + "/v1/chat/completions"
	for i := 0; i < 4; i++ { // under capacity, and the scheduler measures the engine
		resp, body := post(t, url, keyEU, chatBody("tiny", "eu-warm", false))
		if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Region") != "local" || resp.Header.Get("X-Sluice-Overflow") != "" {
			t.Fatalf("under capacity: %d %v %s", resp.StatusCode, resp.Header, body)
		}
	}
	if st.EU.Count()+st.US.Count() != 0 {
		t.Fatal("a request overflowed under capacity")
	}

	// Take the engine's only slot.
	ctx := context.Background()
	hold := &models.Request{Kind: models.KindChat, Model: "tiny", Messages: []models.Message{{Role: "user", Content: "hold"}},
		Body: []byte(`{"model":"tiny","max_tokens":1,"messages":[{"role":"user","content":"hold"}]}`)}
	tgt, err := st.Router.Route(ctx, hold)
	if err != nil {
		t.Fatal(err)
	}
	held, err := st.Sched.Open(ctx, models.Target{Model: tgt.Model, Candidates: tgt.Candidates}, hold)
	if err != nil {
		t.Fatal(err)
	}

	for i, tt := range []struct {
		key, region string
		stream      bool
	}{{keyEU, "eu", false}, {keyEU, "eu", true}, {keyAny, "us", false}, {keyAny, "us", true}} {
		user := fmt.Sprintf("%s-%d", tt.region, i)
		resp, body := post(t, url, tt.key, chatBody("tiny", user, tt.stream))
		if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Region") != tt.region || resp.Header.Get("X-Sluice-Overflow") != "saturated" {
			t.Fatalf("%s key, stream %v: %d region %q overflow %q: %s", tt.region, tt.stream, resp.StatusCode,
				resp.Header.Get("X-Sluice-Region"), resp.Header.Get("X-Sluice-Overflow"), body)
		}
		if !strings.Contains(body, `"model":"mini"`) || !strings.Contains(resp.Header.Get("X-Sluice-Route"), "target=cloud-"+tt.region) {
			t.Errorf("answer names %s; route %q", body[:min(len(body), 200)], resp.Header.Get("X-Sluice-Route"))
		}
	}
	resp, body := post(t, url, keyLocal, chatBody("tiny", "local-1", false))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("local-only key while saturated: %d %s", resp.StatusCode, body)
	}

	// The US cloud fails (503) once: the unrestricted request falls back to the EU one.
	failed := false
	st.US.SetFail(func(int) int {
		if !failed {
			failed = true
			return 503
		}
		return 0
	})
	resp, body = post(t, url, keyAny, chatBody("tiny", "any-fallback", false))
	if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Region") != "eu" || !strings.Contains(resp.Header.Get("X-Sluice-Route"), "attempts=3") {
		t.Fatalf("fallback: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	st.US.SetFail(nil)

	// Residency, where the requests actually arrived.
	for _, r := range st.US.Requests() {
		if strings.HasPrefix(r.User, "eu") || strings.HasPrefix(r.User, "local") {
			t.Errorf("the US cloud received a request of a %s key", r.User)
		}
	}
	if n := len(st.EU.Requests()); n != 3 {
		t.Errorf("EU cloud requests = %d, want 3 (two EU-key requests and the fallback)", n)
	}
	if c := metricValue(t, st.Reg, "sluice_overflow_requests_total", "reason", "saturated", "backend", "cloud-eu"); c != 3 {
		t.Errorf("overflow count for cloud-eu = %v", c)
	}

	// Capacity again: back to the local engine.
	held.Close()
	resp, body = post(t, url, keyEU, chatBody("tiny", "eu-after", false))
	if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Region") != "local" || resp.Header.Get("X-Sluice-Overflow") != "" {
		t.Fatalf("after release: %d %v %s", resp.StatusCode, resp.Header, body)
	}
}

// metricValue reads one counter or gauge series from reg (labels as name, value pairs).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

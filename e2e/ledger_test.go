package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-llm/sluice/models"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// gpt-4o-mini's list price, per million tokens: what the fake cloud's answers cost.
const miniIn, miniOut = 0.15, 0.60

func cloudCost(prompt, completion int64) float64 {
	return (float64(prompt)*miniIn + float64(completion)*miniOut) / 1e6
}

// adminDo sends an admin API request.
func adminDo(t *testing.T, url, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// createKey makes a key through the admin API and returns its id and secret.
func createKey(t *testing.T, url, spec string) (id, secret string) {
	t.Helper()
	code, b := adminDo(t, url, "POST", "/admin/keys", spec)
	if code != 201 {
		t.Fatalf("POST /admin/keys: %d %s", code, b)
	}
	var v struct{ ID, Key string }
	if err := json.Unmarshal(b, &v); err != nil || v.Key == "" {
		t.Fatalf("created key: %s (%v)", b, err)
	}
	return v.ID, v.Key
}

type usageRow struct {
	Group            map[string]string
	Requests         int64
	Errors           int64
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	CostUSD          float64 `json:"cost_usd"`
	EffectiveUSD     float64 `json:"effective_cost_usd"`
	BilledUSD        float64 `json:"billed_usd"`
	ReferenceUSD     float64 `json:"reference_cost_usd"`
	SavingsUSD       float64 `json:"savings_usd"`
	Savings          map[string]float64
}

type usageReport struct {
	GroupBy []string `json:"group_by"`
	Data    []usageRow
	Total   usageRow
}

// TestLedgerWithGoSDK: keys made through the admin API drive a real sluice from the
// official Go SDK; usage is recorded per key, user and feature; a key sees only its own
// usage and an admin all of it (JSON and CSV); a budget spent on the cloud refuses
// cloud requests with 429 (OpenAI's format, the reset time) while local requests go on;
// a rate limit answers 429 too; a revoked key is refused; and sluice's debug log holds
// neither a key nor a prompt.
func TestLedgerWithGoSDK(t *testing.T) {
	bin := buildSluice(t)
	dir := t.TempDir()
	cloud := startCloud(t)
	cfg := ledgerConfig(t, dir, cloud.URL, "    - key: sk-config-team\n      name: team\n      tenant: acme\n", "")
	p := startSluice(t, bin, cfg, dir)
	ctx := context.Background()

	// Two keys from the admin API: one with a small daily budget, one rate-limited.
	budgetID, budgetKey := createKey(t, p.URL, `{"name":"budgeted","tenant":"acme","daily_usd":0.0002}`)
	rateID, rateKey := createKey(t, p.URL, `{"name":"limited","requests_per_minute":2}`)
	code, list := adminDo(t, p.URL, "GET", "/admin/keys", "")
	if code != 200 || !bytes.Contains(list, []byte(budgetID)) || !bytes.Contains(list, []byte(`"source":"config"`)) ||
		bytes.Contains(list, []byte(budgetKey)) {
		t.Fatalf("GET /admin/keys: %d %s", code, list)
	}
	if code, b := adminDo(t, p.URL, "POST", "/admin/keys", `{"residency":"mars"}`); code != 400 {
		t.Errorf("a bad residency: %d %s", code, b)
	}
	if code, _ := adminDo(t, p.URL, "GET", "/admin/keys", ""); code != 200 {
		t.Fatal(code)
	}

	secretPrompt := "the launch code is 7731-alpha-unique"
	newClient := func(key string, opts ...option.RequestOption) oai.Client {
		return oai.NewClient(append([]option.RequestOption{option.WithBaseURL(p.URL + "/v1/"), option.WithAPIKey(key),
			option.WithMaxRetries(0)}, opts...)...)
	}
	budgeted := newClient(budgetKey, option.WithHeader("X-Sluice-Feature", "summaries"))
	chat := func(c oai.Client, model string, stream bool, user string) (*http.Response, error) {
		var resp *http.Response
		params := oai.ChatCompletionNewParams{Model: model, MaxTokens: oai.Int(100), User: oai.String(user),
			Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage(secretPrompt)}}
		if !stream {
			_, err := c.Chat.Completions.New(ctx, params, option.WithResponseInto(&resp))
			return resp, err
		}
		params.StreamOptions = oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)}
		s := c.Chat.Completions.NewStreaming(ctx, params, option.WithResponseInto(&resp))
		for s.Next() {
		}
		return resp, s.Err()
	}
	// The cloud costs $0.0000615 an answer; reservations assume the request's upper
	// bound, so the $0.0002 budget takes at least two answers and never more than three.
	served := 0
	var refused *oai.Error
	for i := range 6 {
		_, err := chat(budgeted, "gpt-4o-mini", i%2 == 1, "alice")
		if err == nil {
			served++
			continue
		}
		if !errors.As(err, &refused) {
			t.Fatalf("request %d: %v", i, err)
		}
		break
	}
	if refused == nil || served < 2 {
		t.Fatalf("served %d cloud answers on a $0.0002 budget; refusal %v", served, refused)
	}
	if refused.StatusCode != 429 || refused.Code != "budget_exceeded" || refused.Type != "insufficient_quota" ||
		!strings.Contains(refused.Message, "daily budget of $0.0002 (") || !strings.Contains(refused.Message, "resets at") ||
		refused.Response.Header.Get("Retry-After") == "" {
		t.Fatalf("refusal: %d %s %s %q Retry-After %q", refused.StatusCode, refused.Type, refused.Code, refused.Message,
			refused.Response.Header.Get("Retry-After"))
	}
	t.Logf("budget $0.0002: %d cloud answers, then %d %s: %s", served, refused.StatusCode, refused.Code, refused.Message)
	// A local request costs this key nothing: never refused for the cloud budget.
	for i := range 2 {
		if _, err := chat(budgeted, "tiny", i == 1, "bob"); err != nil {
			t.Fatalf("local request after the budget was spent: %v", err)
		}
	}

	// A rate limit: 2 requests per minute.
	limited := newClient(rateKey)
	var rl *oai.Error
	for i := range 3 {
		_, err := chat(limited, "tiny", false, "carol")
		if i < 2 && err != nil {
			// The minute may turn between requests: a third one then passes too.
			t.Fatalf("request %d of 2 allowed: %v", i, err)
		}
		if i == 2 && err != nil && !errors.As(err, &rl) {
			t.Fatal(err)
		}
	}
	if rl != nil && (rl.StatusCode != 429 || rl.Code != "rate_limit_exceeded" || !strings.Contains(rl.Message, "2 requests per minute")) {
		t.Errorf("rate limited: %d %s %q", rl.StatusCode, rl.Code, rl.Message)
	}

	// The config key works too, without limits.
	if _, err := chat(newClient("sk-config-team", option.WithHeader("X-Sluice-Feature", "search")), "tiny", true, "dave"); err != nil {
		t.Fatal(err)
	}

	// A key sees its own usage only, grouped as asked.
	var rep usageReport
	if err := budgeted.Get(ctx, "usage?group_by=feature,model,user", nil, &rep); err != nil {
		t.Fatal(err)
	}
	rows := map[string]usageRow{}
	for _, r := range rep.Data {
		rows[r.Group["model"]+"/"+r.Group["user"]+"/"+r.Group["feature"]] = r
	}
	cloudRow, localRow := rows["gpt-4o-mini/alice/summaries"], rows["tiny/bob/summaries"]
	if len(rep.Data) != 2 || cloudRow.Requests != int64(served)+1 || cloudRow.Errors != 1 || localRow.Requests != 2 {
		t.Fatalf("own usage rows: %+v", rep.Data)
	}
	want := cloudCost(cloudRow.PromptTokens, cloudRow.CompletionTokens)
	if d := cloudRow.BilledUSD - want; d > 1e-12 || d < -1e-12 || cloudRow.CompletionTokens != int64(served)*100 ||
		cloudRow.BilledUSD > 0.0002 || cloudRow.CostUSD != cloudRow.BilledUSD {
		t.Errorf("cloud row: billed $%g for %d answers (want $%g, at most $0.0002), %d completion tokens", cloudRow.BilledUSD, served,
			want, cloudRow.CompletionTokens)
	}
	if localRow.BilledUSD != 0 || localRow.CostUSD <= 0 || localRow.ReferenceUSD <= 0 || localRow.EffectiveUSD < localRow.CostUSD {
		t.Errorf("local row: %+v", localRow)
	}
	// Asking for another key's usage is refused; the admin key sees every key.
	if err := budgeted.Get(ctx, "usage?key="+rateID, nil, &rep); err == nil {
		t.Error("a key read another key's usage")
	}
	admin := newClient(adminKey)
	if err := admin.Get(ctx, "usage?group_by=key", nil, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Data) != 3 || rep.Total.Requests != int64(served)+1+2+3+1 {
		t.Errorf("admin report by key: %+v total %+v", rep.Data, rep.Total)
	}
	// CSV.
	req, _ := http.NewRequest("GET", p.URL+"/v1/usage?group_by=key,day&format=csv", nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := csv.NewReader(resp.Body).ReadAll()
	resp.Body.Close()
	if err != nil || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" || len(lines) != 4 || lines[0][0] != "key" ||
		lines[0][1] != "day" || lines[0][2] != "requests" {
		t.Fatalf("CSV: %v %q", err, lines)
	}
	// `sluice usage` reads the same store (here through the API, as an admin).
	var out bytes.Buffer
	cmd := execSluice(t, bin, dir, &out, "usage", "--url", p.URL, "--group-by", "feature")
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), "summaries") || !strings.Contains(out.String(), "SAVED $") {
		t.Fatalf("sluice usage: %v\n%s", err, out.String())
	}

	// Revoked: refused at once (the admin API reloads the keys).
	if code, b := adminDo(t, p.URL, "DELETE", "/admin/keys/"+rateID, ""); code != 200 {
		t.Fatalf("revoke: %d %s", code, b)
	}
	var ae *oai.Error
	if _, err := chat(limited, "tiny", false, "carol"); !errors.As(err, &ae) || ae.StatusCode != 401 {
		t.Fatalf("revoked key: %v", err)
	}
	if code, _ := adminDo(t, p.URL, "DELETE", "/admin/keys/"+models.KeyID(sha256.Sum256([]byte("sk-config-team"))), ""); code != 409 {
		t.Errorf("revoking a config key: %d, want 409", code)
	}

	// Logs: never a key, never a prompt (sluice ran at debug level).
	logs := p.stderr.String()
	for _, secret := range []string{budgetKey, rateKey, "sk-config-team", adminKey, "7731-alpha-unique"} {
		if strings.Contains(logs, secret) {
			t.Errorf("sluice's log contains %q", secret)
		}
	}
	_ = budgetID
}

// TestTwoSluiceProcessesShareLimits: two `sluice serve` processes on one ledger file
// (each with its own llama-server) share one key's rate limit and another's cloud
// budget: neither is exceeded however the requests are split between them.
func TestTwoSluiceProcessesShareLimits(t *testing.T) {
	bin := buildSluice(t)
	dir := t.TempDir()
	cloud := startCloud(t)
	keys := "    - key: sk-rate\n      requests_per_minute: 10\n    - key: sk-budget\n      daily_usd: 0.0005\n"
	a := startSluice(t, bin, ledgerConfig(t, dir, cloud.URL, keys, ""), dir)
	b := startSluice(t, bin, ledgerConfig(t, dir, cloud.URL, keys, ""), dir)
	ctx := context.Background()
	type result struct {
		ok   bool
		code int
	}
	fire := func(key, model string, n int) []result {
		var wg sync.WaitGroup
		res := make([]result, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				url := a.URL
				if i%2 == 1 {
					url = b.URL
				}
				c := oai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
				_, err := c.Chat.Completions.New(ctx, oai.ChatCompletionNewParams{Model: model, MaxTokens: oai.Int(100),
					Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("hi " + strconv.Itoa(i))}})
				var e *oai.Error
				switch {
				case err == nil:
					res[i] = result{ok: true}
				case errors.As(err, &e):
					res[i] = result{code: e.StatusCode}
				default:
					t.Errorf("request %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		return res
	}
	count := func(rs []result) (ok, refused int) {
		for _, r := range rs {
			if r.ok {
				ok++
			} else if r.code == 429 {
				refused++
			} else {
				t.Errorf("status %d", r.code)
			}
		}
		return
	}
	rateOK, rateRefused := count(fire("sk-rate", "tiny", 30))
	budgetOK, budgetRefused := count(fire("sk-budget", "gpt-4o-mini", 30))
	// Both stop: each stores what it has pending on the way out.
	a.stop(t)
	b.stop(t)
	db := openLedgerDB(t, dir)
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM records`).Scan(&n); err != nil || n != 60 {
		t.Fatalf("%d of 60 records stored (%v)", n, err)
	}
	// Per minute of arrival, the rate-limited key never got more than 10 answers.
	rows, err := db.Query(`SELECT time / 60000000, count(*) FROM records WHERE status = 200 AND model = 'tiny' GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	perMinute := map[int64]int{}
	for rows.Next() {
		var m int64
		var n int
		if err := rows.Scan(&m, &n); err != nil {
			t.Fatal(err)
		}
		perMinute[m] = n
		if n > 10 {
			t.Errorf("minute %d: %d answers with a limit of 10 per minute", m, n)
		}
	}
	rows.Close()
	var billed float64
	var budgetServed int
	if err := db.QueryRow(`SELECT total(billed_usd), count(*) FROM records WHERE model = 'gpt-4o-mini' AND status = 200`).Scan(&billed, &budgetServed); err != nil {
		t.Fatal(err)
	}
	t.Logf("rate limit 10/min across two processes: %d served (%v by minute), %d refused; budget $0.0005: %d served for $%.7f, %d refused",
		rateOK, perMinute, rateRefused, budgetOK, billed, budgetRefused)
	if billed > 0.0005+1e-12 {
		t.Fatalf("two processes overspent the budget: $%.7f", billed)
	}
	if rateOK < 10 || rateRefused == 0 || budgetOK < 4 || budgetRefused == 0 || budgetServed != budgetOK {
		t.Errorf("rate: %d ok %d refused; budget: %d ok (%d recorded) %d refused", rateOK, rateRefused, budgetOK, budgetServed, budgetRefused)
	}
}

func execSluice(t *testing.T, bin, dir string, out io.Writer, args ...string) *exec.Cmd {
	t.Helper()
	c := exec.Command(bin, args...)
	c.Env = append(os.Environ(), "SLUICE_CACHE="+dir, "SLUICE_DATA="+dir, "SLUICE_ADMIN_KEY="+adminKey)
	c.Stdout, c.Stderr = out, out
	return c
}

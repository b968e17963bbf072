package ledger

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/models"
)

// cloudPrices bills the backend "cloud" per token ($10 / $30 per million); others are
// local hardware.
type cloudPrices struct{}

func (cloudPrices) TokenPrice(c models.Candidate) (float64, float64, bool) {
	if c.Backend == "cloud" {
		return 10, 30, true
	}
	return 0, 0, false
}

// fakeCloud stands in for a cloud provider behind the stage: it answers every request
// with 20 prompt and 100 completion tokens and remembers where it was sent.
type fakeCloud struct {
	mu      sync.Mutex
	targets []models.Target
}

func (f *fakeCloud) Open(_ context.Context, t models.Target, _ *models.Request) (models.Stream, error) {
	f.mu.Lock()
	f.targets = append(f.targets, t)
	f.mu.Unlock()
	return &doneStream{u: models.Usage{PromptTokens: 20, CompletionTokens: 100}}, nil
}

type doneStream struct{ u models.Usage }

func (s *doneStream) Recv() (models.Chunk, error) { return models.Chunk{}, io.EOF }
func (s *doneStream) Usage() models.Usage         { return s.u }
func (s *doneStream) Close() error                { return nil }

const actualUSD = (20*10 + 100*30) / 1e6 // what fakeCloud's answer costs on "cloud"

// serveOne runs one request through the stage and records it as the gateway would.
func serveOne(ctx context.Context, b *Budget, l *Ledger, key *models.Key, id string, t models.Target) error {
	r := &models.Request{ID: id, Kind: models.KindChat, Key: key, Tenant: key.Tenant, Arrived: time.Now(),
		Deadline: time.Now().Add(time.Minute), Messages: []models.Message{{Role: "user", Content: strings.Repeat("x", 50)}},
		Sampling: models.Sampling{MaxTokens: 100}}
	st, err := b.Open(ctx, t, r)
	status := 200
	var u models.Usage
	if err != nil {
		status = 429
	} else {
		u = st.Usage()
		st.Close()
	}
	r.Trace.Status = status
	rec := l.NewRecord(r, t, &u)
	if status == 200 && t.Candidates[0].Backend == "cloud" {
		rec.CostUSD, rec.BilledUSD = actualUSD, actualUSD
	}
	if aerr := l.Add(&rec); aerr != nil {
		return aerr
	}
	return err
}

var cloudTarget = models.Target{Model: "m", Candidates: []models.Candidate{{Backend: "cloud", UpstreamModel: "m"}}}

// TestBudgetRace: many goroutines race one daily budget; the money spent never passes
// it, and the budget is not left mostly unused either.
func TestBudgetRace(t *testing.T) {
	s, path := openTestStore(t)
	l := openTestLedger(t, s, path, Options{BatchInterval: 2 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = l.Run(ctx) }()
	b := NewBudget(&fakeCloud{}, l, BudgetOptions{Pricer: cloudPrices{}, Registry: prometheus.NewRegistry()})
	const budget = 0.05
	key := &models.Key{ID: "key-race", Tenant: "t", DailyUSD: budget}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				err := serveOne(ctx, b, l, key, fmt.Sprintf("g%d-%d", g, i), cloudTarget)
				if errors.Is(err, models.ErrOverBudget) {
					// Refused while others' estimates were reserved: try again once
					// they have settled, and stop when the budget is really spent.
					if i > 200 {
						return
					}
					if err := l.Flush(ctx); err != nil {
						t.Error(err)
						return
					}
					_, _, used := budgetUsed(t, s, key.ID)
					if used+estimateUSD() > budget {
						return
					}
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				admitted.Add(1)
			}
		}()
	}
	wg.Wait()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	_, _, spent := budgetUsed(t, s, key.ID)
	limit, per := budget, actualUSD
	fit := int64(limit / per)
	t.Logf("admitted %d requests, spent $%.4f of $%.2f (at most %d fit)", admitted.Load(), spent, budget, fit)
	if spent > budget+1e-12 {
		t.Fatalf("overspent: $%.6f of $%.2f", spent, budget)
	}
	if admitted.Load() < int64((limit-estimateUSD())/per) {
		t.Errorf("only %d requests admitted; about %d fit", admitted.Load(), fit)
	}
}

// estimateUSD is what the stage reserves for serveOne's request (an upper bound).
func estimateUSD() float64 {
	p, c := estimateTokens(&models.Request{Messages: []models.Message{{Content: strings.Repeat("x", 50)}},
		Sampling: models.Sampling{MaxTokens: 100}}, 1024)
	return (float64(p)*10 + float64(c)*30) / 1e6
}

func budgetUsed(t *testing.T, s *SQLite, key string) (reqs, tokens int64, usd float64) {
	t.Helper()
	now := time.Now()
	err := s.db.QueryRow(`SELECT requests, tokens, usd FROM windows WHERE key_id = ? AND span = 'd' AND start = ?`,
		key, dayOf(now)).Scan(&reqs, &tokens, &usd)
	if err != nil && !strings.Contains(err.Error(), "no rows") {
		t.Fatal(err)
	}
	return
}

// TestLocalNeverBlockedByCloudBudget: with the budget spent, a request that may go to
// the cloud or a local engine runs locally; one that can only go to the cloud gets 429
// with the reset time; rate limits still apply to local requests.
func TestLocalNeverBlockedByCloudBudget(t *testing.T) {
	s, path := openTestStore(t)
	l := openTestLedger(t, s, path, Options{})
	ctx := context.Background()
	cloud := &fakeCloud{}
	b := NewBudget(cloud, l, BudgetOptions{Pricer: cloudPrices{}})
	key := &models.Key{ID: "key-spent", Tenant: "t", DailyUSD: actualUSD * 1.5, RequestsPerMinute: 2}
	if err := serveOne(ctx, b, l, key, "1", cloudTarget); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The budget cannot pay for a second cloud answer.
	err := serveOne(ctx, b, l, key, "2", cloudTarget)
	var me *models.Error
	if !errors.Is(err, models.ErrOverBudget) || !errors.As(err, &me) || me.RetryAfter <= 0 ||
		!strings.Contains(me.Msg, "daily budget of $0.0048 ($0.0032 spent") || !strings.Contains(me.Msg, "resets at") {
		t.Fatalf("cloud-only request: %v", err)
	}
	both := models.Target{Model: "m", Candidates: []models.Candidate{{Backend: "cloud"}, {Backend: "local", Region: models.RegionLocal}}}
	if err := serveOne(ctx, b, l, key, "3", both); err != nil {
		t.Fatalf("a request local engines can serve was refused: %v", err)
	}
	got := cloud.targets[len(cloud.targets)-1]
	if len(got.Candidates) != 1 || got.Candidates[0].Backend != "local" {
		t.Fatalf("dispatched to %+v, want the local candidate only", got.Candidates)
	}
	// A local model whose overflow fallback is the cloud: the fallback goes, the
	// request stays.
	key2 := &models.Key{ID: "key-spent2", Tenant: "t", DailyUSD: actualUSD * 1.5}
	if err := serveOne(ctx, b, l, key2, "5", cloudTarget); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	withFallback := models.Target{Model: "m", Candidates: []models.Candidate{{Backend: "local"}}, Fallbacks: []models.Candidate{{Backend: "cloud"}}}
	if err := serveOne(ctx, b, l, key2, "6", withFallback); err != nil {
		t.Fatalf("a local request with a cloud fallback was refused: %v", err)
	}
	if got := cloud.targets[len(cloud.targets)-1]; len(got.Fallbacks) != 0 || len(got.Candidates) != 1 {
		t.Fatalf("dispatched with %+v", got)
	}
	local := models.Target{Model: "m", Candidates: []models.Candidate{{Backend: "local"}}}
	if err := serveOne(ctx, b, l, key, "4", local); !errors.Is(err, models.ErrRejected) {
		t.Fatalf("3rd request admitted in a minute with a limit of 2: %v", err)
	}
}

// TestTwoProcessesShareABudget runs two processes (this test binary, re-executed) that
// race one daily budget in one SQLite file.
func TestTwoProcessesShareABudget(t *testing.T) {
	if os.Getenv("LEDGER_CHILD_DB") != "" {
		return // runs as a child in TestMain's helper
	}
	path := filepath.Join(t.TempDir(), "shared.db")
	s, err := OpenSQLite(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Both processes open the store, say "ready", and start racing when told "go".
	var wg sync.WaitGroup
	outs := make([]string, 2)
	gos := make([]io.WriteCloser, 2)
	ready := make(chan struct{}, 2)
	for i := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "LEDGER_CHILD_DB="+path, "LEDGER_CHILD_ID="+strconv.Itoa(i))
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		gos[i] = in
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if sc.Text() == "ready" {
					ready <- struct{}{}
					continue
				}
				outs[i] += sc.Text() + "\n"
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("child %d: %v\n%s", i, err, outs[i])
			}
		}()
	}
	<-ready
	<-ready
	for _, in := range gos {
		fmt.Fprintln(in, "go")
		in.Close()
	}
	wg.Wait()
	var admitted [2]int
	for i, o := range outs {
		if _, err := fmt.Sscanf(strings.TrimSpace(o[strings.LastIndex(o, "admitted"):]), "admitted %d", &admitted[i]); err != nil {
			t.Fatalf("child %d said %q", i, o)
		}
	}
	_, _, spent := budgetUsed(t, s, "key-shared")
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM records WHERE status = 200`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	t.Logf("process 0 admitted %d, process 1 %d; spent $%.4f of $%.2f", admitted[0], admitted[1], spent, childBudget)
	if spent > childBudget+1e-12 {
		t.Fatalf("two processes overspent: $%.6f of $%.2f", spent, childBudget)
	}
	if n != admitted[0]+admitted[1] || admitted[0] == 0 || admitted[1] == 0 {
		t.Errorf("records %d, admitted %v", n, admitted)
	}
}

const childBudget = 0.2

// runChild is one of TestTwoProcessesShareABudget's processes.
func runChild(path string) int {
	s, err := OpenSQLite(path, false)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	l, err := Open(context.Background(), s, Options{JournalDir: path + ".journal", BatchInterval: 2 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	b := NewBudget(&fakeCloud{}, l, BudgetOptions{Pricer: cloudPrices{}})
	key := &models.Key{ID: "key-shared", Tenant: "t", DailyUSD: childBudget}
	// One request each before the race (the budget holds both), so that both processes
	// have spent from the shared budget whichever of them the race's start favours: on a
	// loaded machine one may have used the rest of it before the other runs at all.
	var admitted atomic.Int64
	if err := serveOne(ctx, b, l, key, os.Getenv("LEDGER_CHILD_ID")+"-first", cloudTarget); err != nil {
		fmt.Println("first request:", err)
		cancel()
		return 1
	}
	admitted.Add(1)
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Println(err)
		cancel()
		return 1
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				err := serveOne(ctx, b, l, key, fmt.Sprintf("%s-%d-%d", os.Getenv("LEDGER_CHILD_ID"), g, i), cloudTarget)
				if err == nil {
					admitted.Add(1)
				} else if !errors.Is(err, models.ErrOverBudget) {
					fmt.Println("error:", err)
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	if err := <-done; err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Printf("admitted %d\n", admitted.Load())
	return 0
}

func TestMain(m *testing.M) {
	if p := os.Getenv("LEDGER_CHILD_DB"); p != "" {
		os.Exit(runChild(p))
	}
	os.Exit(m.Run())
}

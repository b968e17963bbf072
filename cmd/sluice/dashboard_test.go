package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/internal/fakecloud"
	"github.com/sluice-llm/sluice/models/tinymodel"
)

var (
	screenshot = flag.String("screenshot", "", "also write the dashboard test's screenshot to this PNG file (docs/dashboard.png)")
	dashFor    = flag.Duration("dashboard-for", 0, "keep the dashboard test's traffic going this long before the screenshot")
)

const dashAdminKey = "sk-admin-dashboard"

// chromiumPath finds Debian's chromium (.ci/run installs it).
func chromiumPath(t *testing.T) string {
	for _, p := range []string{"/usr/lib/chromium/chromium", "/usr/bin/chromium"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed (apt-get install chromium; .ci/run does)")
	return ""
}

// serveForDashboard runs `sluice serve` in this process with a managed llama-server
// (tier small, one slot, a 1ms SLO so that concurrent requests overflow), a fake EU cloud
// (tier large), compression allowed by header, the answer cache, the ledger, the Batch
// API and an admin key; server is more of the server section (", api_keys: [...]").
func serveForDashboard(t *testing.T, server string) (base string, stop func()) {
	t.Helper()
	cloud, err := fakecloud.Start(fakecloud.Options{Name: "eu", MaxTokens: 6, TTFT: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cloud.Close)
	port := enginetest.FreePort(t)
	model, llama := enginetest.TinyModel(t, tinymodel.Options{}), enginetest.LlamaServerPath(t)
	t.Setenv("SLUICE_CACHE", t.TempDir())
	t.Setenv("SLUICE_DATA", t.TempDir())
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte(`
server: {listen: 127.0.0.1:`+itoa(port)+`, admin_keys: [`+dashAdminKey+`]`+server+`}
log: {level: warn}
engines:
  - name: local
    model_path: `+model+`
    binary: `+llama+`
    slots: 1
    threads: 1
    models: [{name: tiny, tier: small}]
  - name: cloud-eu
    kind: openai
    url: `+cloud.URL+`
    api_key: sk-provider
    region: eu
    models:
      - {name: big, upstream: gpt-4o, tier: large, price: {input: 2.5, output: 10}}
routing:
  tiers: [small, large]
scheduler:
  slo: {interactive: 1ms}
batch: {concurrency: 1}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"serve", "--config", cfg}, pw, io.Discard)
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	var out []string
	for lines.Scan() {
		out = append(out, lines.Text())
		if strings.HasPrefix(lines.Text(), "sluice ready") {
			break
		}
	}
	if len(out) == 0 || !strings.HasPrefix(out[len(out)-1], "sluice ready") {
		cancel()
		t.Fatalf("no ready line:\n%s", strings.Join(out, "\n"))
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	return "http://127.0.0.1:" + itoa(port), func() {
		cancel()
		select {
		case c := <-code:
			if c != 0 {
				t.Errorf("serve exit code %d", c)
			}
		case <-time.After(60 * time.Second):
			t.Error("serve did not stop")
		}
	}
}

// traffic keeps sluice busy until ctx ends: streamed and whole chats on the local
// engine (some at once, which overflow to the cloud), requests for the cloud model, a
// repeated question (cache hits), long prompts compressed on request, and a batch.
func traffic(ctx context.Context, t *testing.T, base, key string) {
	post := func(path, body string, hdr ...string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	chat := func(model string, stream bool, content string) string {
		return fmt.Sprintf(`{"model":%q,"stream":%v,"max_tokens":6,"messages":[{"role":"user","content":%q}]}`, model, stream, content)
	}
	var lb strings.Builder
	for i := range 60 {
		fmt.Fprintf(&lb, "In week %d the plant shipped %d units, scrap was %d.%d%%, and line %d stopped for %d minutes. ", i+1, 900+37*i, i%4, (7*i)%10, i%3+1, (13*i)%45)
	}
	long := lb.String()
	// A batch of a few lines, uploaded as the SDKs do.
	var lines bytes.Buffer
	for i := range 120 {
		fmt.Fprintf(&lines, `{"custom_id":"d%d","method":"POST","url":"/v1/chat/completions","body":{"model":"tiny","max_tokens":4,"messages":[{"role":"user","content":"batch %d"}]}}`+"\n", i, i)
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	_ = mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", "lines.jsonl")
	fw.Write(lines.Bytes())
	mw.Close()
	up, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/files", &form)
	up.Header.Set("Content-Type", mw.FormDataContentType())
	if key != "" {
		up.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(up)
	if err != nil {
		t.Errorf("upload: %v", err)
		return
	}
	var fileID string
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, after, ok := strings.Cut(string(b), `"id":"`); ok {
		fileID, _, _ = strings.Cut(after, `"`)
	}
	post("/v1/batches", `{"input_file_id":"`+fileID+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`)
	pace := time.NewTicker(100 * time.Millisecond) // a steady load, not a flood
	defer pace.Stop()
	for i := 0; ctx.Err() == nil; i++ {
		select {
		case <-ctx.Done():
			return
		case <-pace.C:
		}
		var wg sync.WaitGroup
		for c := range 3 { // three at once on one slot: the scheduler refuses, the cloud takes them
			wg.Add(1)
			go func() {
				defer wg.Done()
				post("/v1/chat/completions", chat("tiny", c%2 == 0, fmt.Sprintf("Question %d.%d?", i, c)))
			}()
		}
		wg.Wait()
		post("/v1/chat/completions", chat("big", true, "Explain tides."))
		// The same question again and again, deterministic: the answer cache serves it.
		post("/v1/chat/completions", `{"model":"tiny","temperature":0,"max_tokens":6,"messages":[{"role":"user","content":"What is a sluice?"}]}`)
		post("/v1/chat/completions", chat("tiny", true, long+fmt.Sprintf("\n\nWhat is the outlook for year %d?", i)), "X-Sluice-Compress", "ratio=2")
	}
}

// TestDashboardInBrowser: headless Chromium opens /dashboard of a running sluice under
// traffic, is refused with a wrong admin key, signs in with the right one, and the
// charts fill with sluice's figures; no console errors; the screenshot shows drawn
// lines in every chart that has data, and the GPU charts say there are no GPUs.
func TestDashboardInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	base, stop := serveForDashboard(t, "")
	defer stop()
	tctx, stopTraffic := context.WithCancel(context.Background())
	var twg sync.WaitGroup
	twg.Add(1)
	go func() { defer twg.Done(); traffic(tctx, t, base, "") }()
	defer func() { stopTraffic(); twg.Wait() }()

	actx, cancelA := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000))
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()

	var mu sync.Mutex
	var problems []string
	// The first call starts the browser (with a context that has no timeout: it lives
	// as long as bctx).
	if err := chromedp.Listen(bctx, func(ev any) {
		var msg string
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning || e.Type == runtime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				msg = "console." + string(e.Type) + ": " + strings.Join(parts, " ")
			}
		case *runtime.EventExceptionThrown:
			msg = "exception: " + e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
		case *log.EventEntryAdded:
			if e.Entry.Level == log.EntryLevelError || e.Entry.Level == log.EntryLevelWarning {
				msg = "log: " + e.Entry.Text + " " + e.Entry.URL
			}
		}
		if msg != "" {
			mu.Lock()
			problems = append(problems, msg)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	takeProblems := func() []string {
		mu.Lock()
		defer mu.Unlock()
		p := problems
		problems = nil
		return p
	}
	if _, err := chromedp.Call(bctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(bctx, runtime.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bctx, 4*time.Minute)
	defer cancel()

	// A wrong key is refused and the form says why (the browser logs the 401).
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/dashboard"),
		chromedp.WaitVisible(chromedp.CSS("#login")),
		chromedp.SendKeys(chromedp.CSS("#key"), "sk-wrong"),
		chromedp.Click(chromedp.CSS("#login button")),
	); err != nil {
		t.Fatal(err)
	}
	loginErr, err := chromedp.Run(ctx, chromedp.Poll[string](`document.getElementById('login-error').textContent`,
		chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil || !strings.Contains(loginErr, "admin key") {
		t.Errorf("login error %q (%v)", loginErr, err)
	}
	for _, p := range takeProblems() {
		if !strings.Contains(p, "401") {
			t.Errorf("with a wrong key: %s", p)
		}
	}

	// The right key: the board fills.
	filled := []string{"rps", "ttft", "latency", "slots", "queue", "cache", "compress", "routes", "overflow", "cpm", "savings", "batch"}
	pointsJS := `Object.fromEntries([...document.querySelectorAll('canvas[data-chart]')].map(c => [c.dataset.chart, +c.dataset.points]))`
	waitJS := `(() => { const want = ` + jsList(filled) + `; const n = ` + pointsJS + `;
		return want.every(k => n[k] >= 3) ? n : null; })()`
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#key"), dashAdminKey),
		chromedp.Click(chromedp.CSS("#login button")),
		chromedp.WaitVisible(chromedp.CSS("#board")),
	); err != nil {
		t.Fatal(err)
	}
	counts, err := chromedp.Run(ctx, chromedp.Poll[map[string]int](waitJS,
		chromedp.WithPollingTimeout(150*time.Second), chromedp.WithPollingInterval(500*time.Millisecond)))
	if err != nil {
		now, _ := chromedp.Run(bctx, chromedp.Evaluate[map[string]int](pointsJS))
		var metrics []string
		if resp, err := http.Get(base + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "overflow") || strings.Contains(l, "scheduler_requests") || strings.Contains(l, "compress_requests") {
					metrics = append(metrics, l)
				}
			}
		}
		t.Fatalf("charts did not fill: %v (points per chart: %v)\n%s", err, now, strings.Join(metrics, "\n"))
	}
	if *dashFor > 0 { // a fuller picture for the docs
		hold := time.NewTimer(*dashFor)
		<-hold.C
		counts, _ = chromedp.Run(ctx, chromedp.Evaluate[map[string]int](pointsJS))
	}
	stopTraffic()
	for _, k := range []string{"gpu_util", "gpu_mem", "gpu_power"} {
		if counts[k] != 0 {
			t.Errorf("chart %s has %d points on a box without GPUs", k, counts[k])
		}
	}
	stats, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](
		`Object.fromEntries([...document.querySelectorAll('.stat .value')].map(e => [e.id, e.textContent]))`))
	if err != nil {
		t.Fatal(err)
	}
	type box struct{ X, Y, W, H float64 }
	boxes, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]box](`Object.fromEntries([...document.querySelectorAll('canvas[data-chart]')].map(c => {
		const r = c.getBoundingClientRect(); return [c.dataset.chart, {X: r.left + scrollX, Y: r.top + scrollY, W: r.width, H: r.height}]; }))`))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range takeProblems() {
		t.Errorf("browser: %s", p)
	}
	for id, v := range stats {
		if v == "–" || v == "" {
			t.Errorf("stat %s is empty", id)
		}
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if *screenshot != "" {
		if err := os.WriteFile(*screenshot, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A blank or unstyled page has a handful of colours; a drawn one 49 to 60-odd (it
	// depends on how many points the charts have): the charts' own lines are checked below.
	if colors := distinctColors(img, 4); colors < 25 {
		t.Errorf("the screenshot has %d colours: blank?", colors)
	}
	for _, k := range filled {
		b, ok := boxes[k]
		if !ok {
			t.Errorf("no canvas for %s", k)
			continue
		}
		if n := lineCoverage(img, image.Rect(int(b.X), int(b.Y), int(b.X+b.W), int(b.Y+b.H))); n < 20 {
			t.Errorf("chart %s: %d line pixels in the screenshot", k, n)
		}
	}
	for _, k := range []string{"gpu_util", "gpu_mem", "gpu_power"} {
		b := boxes[k]
		if n := lineCoverage(img, image.Rect(int(b.X), int(b.Y), int(b.X+b.W), int(b.Y+b.H))); n != 0 {
			t.Errorf("GPU chart %s has %d line pixels without GPUs", k, n)
		}
	}
	t.Logf("points per chart: %v; stats: %v", counts, stats)
}

func jsList(ss []string) string {
	return "['" + strings.Join(ss, "','") + "']"
}

// lineCoverage counts the pixels in r drawn in one of the page's series colours.
func lineCoverage(img image.Image, r image.Rectangle) int {
	palette := [][3]int{{0x4e, 0x9f, 0xe5}, {0xf0, 0xa0, 0x4b}, {0xe5, 0x53, 0x4b}, {0x57, 0xab, 0x5a}, {0xc6, 0x90, 0x26},
		{0xb0, 0x83, 0xf0}, {0x39, 0xc5, 0xcf}, {0xf7, 0x78, 0xba}, {0x9c, 0xa3, 0xad}, {0x8d, 0xdb, 0x8c}}
	n := 0
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			for _, p := range palette {
				if abs(int(cr>>8)-p[0]) < 12 && abs(int(cg>>8)-p[1]) < 12 && abs(int(cb>>8)-p[2]) < 12 {
					n++
					break
				}
			}
		}
	}
	return n
}

// distinctColors counts colours (quantized to 8 levels per channel, sampling every
// step pixels).
func distinctColors(img image.Image, step int) int {
	seen := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += step {
		for x := b.Min.X; x < b.Max.X; x += step {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 13, g >> 13, bl >> 13}] = true
		}
	}
	return len(seen)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

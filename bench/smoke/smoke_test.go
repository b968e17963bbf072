package smoke

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/models/tinymodel"
)

// TestSmokeOnCPU runs the GPU smoke test end to end on this machine's CPU (llama-server's
// CPU build ignores the GPU offload): the same code path a RunPod pod runs.
func TestSmokeOnCPU(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sluice")
	build := exec.Command("go", "build", "-o", bin, "github.com/sluice-llm/sluice/cmd/sluice")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sluice: %v\n%s", err, out)
	}
	var log strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{
		Sluice: bin, LlamaServer: enginetest.LlamaServerPath(t), Model: enginetest.TinyModel(t, tinymodel.Options{}),
		Slots: 2, Concurrency: 2, Requests: 4, MaxTokens: 16, GPULayers: 0,
		Port: enginetest.FreePort(t), Dir: t.TempDir(), Log: &log,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if res.RequestsOK != 4 || res.Tokens != 4*16 || res.TPS <= 0 || res.TPSSingle <= 0 {
		t.Fatalf("result %+v", res)
	}
	if res.GPU != "none (CPU)" || res.USDPerHour != 0.05 || res.USDPerMTokens <= 0 || res.USDPerMTokensFullLoad <= 0 {
		t.Fatalf("cost figures %+v", res)
	}
	var tab strings.Builder
	res.WriteTable(&tab)
	if !strings.Contains(tab.String(), "cost per 1M tokens (full load)") {
		t.Fatalf("table:\n%s", tab.String())
	}
	if !strings.Contains(log.String(), "Cost") {
		t.Errorf("no status output in the log:\n%s", log.String())
	}
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/cost"
	"github.com/sluice-llm/sluice/gpu"
	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/scheduler"
)

// status is GET /admin/status.
type status struct {
	GPUs    gpu.Snapshot       `json:"gpus"`
	Engines []scheduler.Status `json:"engines"`
	Models  []models.ModelInfo `json:"models"`
	Costs   []cost.Report      `json:"costs"`
}

func statusJSON(mon *gpu.Monitor, sched *scheduler.Scheduler, rt *router.Router, acct *cost.Accountant) []byte {
	b, _ := json.Marshal(status{GPUs: mon.Snapshot(), Engines: sched.Status(), Models: rt.Models(), Costs: acct.Reports()})
	return b
}

// gpus prints this box's GPUs (read through NVML now).
func gpus(ctx context.Context, _ []string, stdout io.Writer) error {
	src := gpu.NewSource()
	defer src.Close()
	snap := gpu.NewMonitor(src, gpu.MonitorOptions{}).Refresh(ctx)
	return gpu.WriteTable(stdout, snap)
}

// statusCmd prints a running sluice's GPUs, engines, models and costs.
func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080", "sluice's base URL")
	keyFile := fs.String("admin-key-file", "", "file holding the admin key (default: the one sluice serve wrote)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	key, ok := os.LookupEnv("SLUICE_ADMIN_KEY")
	if !ok {
		path := *keyFile
		if path == "" {
			path = config.CacheDir(config.OSEnv) + "/admin-key"
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("status: no admin key (set SLUICE_ADMIN_KEY or --admin-key-file): %w", err)
		}
		key = strings.TrimSpace(string(b))
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, strings.TrimRight(*url, "/")+"/admin/status", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status: %s answered %d: %s", *url, resp.StatusCode, body)
	}
	var st status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return writeStatus(stdout, st)
}

func writeStatus(w io.Writer, st status) error {
	fmt.Fprintln(w, "GPUs")
	if err := gpu.WriteTable(w, st.GPUs); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nEngines")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENGINE\tHEALTHY\tSLOTS\tBUSY\tIN FLIGHT\tQUEUED\tNOTE")
	for _, e := range st.Engines {
		fmt.Fprintf(tw, "%s\t%v\t%d\t%d\t%d\t%d\t%s\n", e.ID, e.Capacity.Healthy, e.Capacity.Slots, e.Capacity.Busy, e.InFlight, e.Queued, e.Capacity.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nModels")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tKIND\tENGINE")
	for _, m := range st.Models {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m.ID, m.Kind, m.Backend)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nCost")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENGINE\tHARDWARE\tMODEL\t$/HOUR\tPROMPT TOK\tCOMPLETION TOK\tCOST $\t$/M TOKENS\tCLOUD REF $")
	for _, c := range st.Costs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%.0f\t%.0f\t%.6f\t%.4f\t%.6f\n", c.Engine, c.GPU, c.Model, c.PerHour,
			c.PromptTokens, c.CompletionTokens, c.CostUSD, c.PerMillionTokens, c.ReferenceUSD)
	}
	return tw.Flush()
}

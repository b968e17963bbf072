package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/ledger"
)

// storeFlags say where `sluice keys` and `sluice usage` find the books: a running
// sluice's admin API (--url), or the store itself (--ledger, or the one --config names,
// or the default).
type storeFlags struct {
	url, ledgerPath, configPath, adminKeyFile, apiKey string
	asJSON                                            bool
}

func (f *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "url", "", "a running sluice's base URL: use its API instead of opening the store")
	fs.StringVar(&f.ledgerPath, "ledger", "", "the ledger's SQLite file (default: the config's ledger.path)")
	fs.StringVar(&f.configPath, "config", "", "sluice's config file (for ledger.path and the keys in it)")
	fs.StringVar(&f.adminKeyFile, "admin-key-file", "", "with --url: file holding the admin key (default: $SLUICE_ADMIN_KEY, then the one sluice serve wrote)")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON")
}

// open opens the store and the key ring (config keys and stored keys).
func (f *storeFlags) open(ctx context.Context) (*ledger.SQLite, *ledger.KeyRing, error) {
	path := f.ledgerPath
	var cks []ledger.ConfigKey
	if f.configPath != "" {
		cfg, err := config.Load(f.configPath, config.OSEnv)
		if err != nil {
			return nil, nil, err
		}
		cks = configKeys(cfg)
		if path == "" {
			path = cfg.Ledger.Path
		}
	}
	if path == "" {
		path = filepath.Join(config.DataDir(config.OSEnv), "ledger.db")
	}
	s, err := ledger.OpenSQLite(path, false)
	if err != nil {
		return nil, nil, err
	}
	// Records a crashed sluice left in its journal belong in any report.
	if _, err := ledger.Recover(ctx, s, path+".journal"); err != nil {
		s.Close()
		return nil, nil, err
	}
	keys, err := ledger.NewKeyRing(ctx, cks, s)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, keys, nil
}

// adminKey reads the admin key for --url.
func (f *storeFlags) adminKey() (string, error) {
	if k, ok := os.LookupEnv("SLUICE_ADMIN_KEY"); ok && f.adminKeyFile == "" {
		return k, nil
	}
	path := f.adminKeyFile
	if path == "" {
		path = filepath.Join(config.CacheDir(config.OSEnv), "admin-key")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("no admin key (set SLUICE_ADMIN_KEY or --admin-key-file): %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// call sends one request to a running sluice and returns its body (an error for any
// status but 2xx, with sluice's message).
func (f *storeFlags) call(ctx context.Context, method, path string, body []byte, key string) ([]byte, error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, strings.TrimRight(f.url, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return nil, fmt.Errorf("%s answered %d: %s", f.url, resp.StatusCode, e.Error.Message)
		}
		return nil, fmt.Errorf("%s answered %d: %s", f.url, resp.StatusCode, b)
	}
	return b, nil
}

const keysUsage = `Usage:
  sluice keys create [--name N] [--tenant T] [--residency local-only|eu|any] [--tiers a,b] [--models m,n]
                     [--no-cache] [--rpm N] [--tpm N] [--daily-usd X] [--monthly-usd X]
  sluice keys list
  sluice keys revoke ID
Each takes --url URL (a running sluice, with its admin key) or --ledger FILE / --config FILE
(the store itself); --json prints JSON.
`

// keysCmd manages API keys: create (the key is printed once), list, revoke.
func keysCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return errors.New("keys: say create, list or revoke")
	}
	sub := args[0]
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f storeFlags
	f.register(fs)
	var spec ledger.KeySpec
	var tiers, mods string
	if sub == "create" {
		fs.StringVar(&spec.Name, "name", "", "a name for people")
		fs.StringVar(&spec.Tenant, "tenant", "", "tenant (scopes caches, fair queuing; default: the key's id)")
		fs.StringVar(&spec.Residency, "residency", "any", "where requests may be served: local-only, eu or any")
		fs.StringVar(&tiers, "tiers", "", "allowed tiers, comma-separated (default: all)")
		fs.StringVar(&mods, "models", "", "allowed models, comma-separated (default: all)")
		fs.BoolVar(&spec.NoCache, "no-cache", false, "never answer this key from the cache")
		fs.IntVar(&spec.RequestsPerMinute, "rpm", 0, "requests per minute (0: no limit)")
		fs.IntVar(&spec.TokensPerMinute, "tpm", 0, "tokens per minute (0: no limit)")
		fs.Float64Var(&spec.DailyUSD, "daily-usd", 0, "budget in US dollars per day, UTC (0: none)")
		fs.Float64Var(&spec.MonthlyUSD, "monthly-usd", 0, "budget in US dollars per calendar month, UTC (0: none)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	spec.Tiers, spec.Models = splitList(tiers), splitList(mods)
	switch sub {
	case "create":
		return keysCreate(ctx, &f, spec, stdout)
	case "list":
		return keysList(ctx, &f, stdout)
	case "revoke":
		if fs.NArg() != 1 {
			return errors.New("keys revoke: give the key's id (key-...)")
		}
		return keysRevoke(ctx, &f, fs.Arg(0), stdout)
	}
	fmt.Fprint(stderr, keysUsage)
	return fmt.Errorf("keys: unknown subcommand %q", sub)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func keysCreate(ctx context.Context, f *storeFlags, spec ledger.KeySpec, stdout io.Writer) error {
	var v ledger.KeyView
	if f.url != "" {
		key, err := f.adminKey()
		if err != nil {
			return err
		}
		body, _ := json.Marshal(spec)
		b, err := f.call(ctx, http.MethodPost, "/admin/keys", body, key)
		if err != nil {
			return fmt.Errorf("keys create: %w", err)
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
	} else {
		s, keys, err := f.open(ctx)
		if err != nil {
			return err
		}
		defer s.Close()
		secret, info, err := keys.Create(ctx, spec.Key(), time.Now())
		if err != nil {
			return fmt.Errorf("keys create: %w", err)
		}
		v = ledger.ViewOf(info)
		v.Secret = secret
	}
	if f.asJSON {
		return json.NewEncoder(stdout).Encode(v)
	}
	fmt.Fprintf(stdout, "created %s (tenant %s, residency %s)\n", v.ID, v.Tenant, v.Residency)
	fmt.Fprintf(stdout, "the key, shown this once (only its SHA-256 is kept):\n%s\n", v.Secret)
	return nil
}

func keysList(ctx context.Context, f *storeFlags, stdout io.Writer) error {
	var views []ledger.KeyView
	if f.url != "" {
		key, err := f.adminKey()
		if err != nil {
			return err
		}
		b, err := f.call(ctx, http.MethodGet, "/admin/keys", nil, key)
		if err != nil {
			return fmt.Errorf("keys list: %w", err)
		}
		var list struct{ Data []ledger.KeyView }
		if err := json.Unmarshal(b, &list); err != nil {
			return err
		}
		views = list.Data
	} else {
		s, keys, err := f.open(ctx)
		if err != nil {
			return err
		}
		defer s.Close()
		for _, k := range keys.List() {
			views = append(views, ledger.ViewOf(k))
		}
	}
	if f.asJSON {
		return json.NewEncoder(stdout).Encode(views)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tTENANT\tRESIDENCY\tTIERS\tMODELS\tRPM\tTPM\t$/DAY\t$/MONTH\tSOURCE\tSTATUS")
	for _, v := range views {
		st := "active"
		if v.Revoked != 0 {
			st = "revoked " + time.Unix(v.Revoked, 0).UTC().Format(time.DateOnly)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, dash(v.Name), v.Tenant, v.Residency,
			dash(strings.Join(v.Tiers, ",")), dash(strings.Join(v.Models, ",")), limit(float64(v.RequestsPerMinute)),
			limit(float64(v.TokensPerMinute)), limit(v.DailyUSD), limit(v.MonthlyUSD), v.Source, st)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func limit(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprint(v)
}

func keysRevoke(ctx context.Context, f *storeFlags, id string, stdout io.Writer) error {
	if f.url != "" {
		key, err := f.adminKey()
		if err != nil {
			return err
		}
		if _, err := f.call(ctx, http.MethodDelete, "/admin/keys/"+url.PathEscape(id), nil, key); err != nil {
			return fmt.Errorf("keys revoke: %w", err)
		}
	} else {
		s, keys, err := f.open(ctx)
		if err != nil {
			return err
		}
		defer s.Close()
		if err := keys.Revoke(ctx, id, time.Now()); err != nil {
			return fmt.Errorf("keys revoke: %w", err)
		}
	}
	fmt.Fprintf(stdout, "revoked %s (a running sluice stops accepting it within ledger.keys_refresh)\n", id)
	return nil
}

// usageCmd prints a usage report: by key, user, feature, model, target, region or day,
// with savings against the reference model by cause.
func usageCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("usage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f storeFlags
	f.register(fs)
	fs.StringVar(&f.apiKey, "api-key", "", "with --url: see this key's own usage (default: the admin key, which sees all)")
	q := map[string]*string{}
	for _, n := range []string{"from", "to", "key", "tenant", "user", "feature", "model", "target", "region"} {
		q[n] = fs.String(n, "", "filter or period: "+n)
	}
	groupBy := fs.String("group-by", "key", "comma list of: "+strings.Join(ledger.Groups, ", "))
	asCSV := fs.Bool("csv", false, "print CSV")
	if err := fs.Parse(args); err != nil {
		return err
	}
	v := url.Values{}
	for n, p := range q {
		if *p != "" {
			v.Set(n, *p)
		}
	}
	if *groupBy != "" {
		v.Set("group_by", *groupBy)
	}
	var rep ledger.Report
	if f.url != "" {
		key := f.apiKey
		if key == "" {
			var err error
			if key, err = f.adminKey(); err != nil {
				return err
			}
		}
		b, err := f.call(ctx, http.MethodGet, "/v1/usage?"+v.Encode(), nil, key)
		if err != nil {
			return fmt.Errorf("usage: %w", err)
		}
		if err := json.Unmarshal(b, &rep); err != nil {
			return err
		}
	} else {
		query, _, err := ledger.ParseQuery(v.Encode(), time.Now())
		if err != nil {
			return err
		}
		s, _, err := f.open(ctx)
		if err != nil {
			return err
		}
		defer s.Close()
		r, err := ledger.BuildReport(ctx, s, query)
		if err != nil {
			return err
		}
		rep = *r
	}
	switch {
	case *asCSV:
		_, err := stdout.Write(rep.CSV())
		return err
	case f.asJSON:
		_, err := stdout.Write(append(rep.JSON(), '\n'))
		return err
	}
	return writeUsage(stdout, &rep)
}

func writeUsage(w io.Writer, rep *ledger.Report) error {
	fmt.Fprintf(w, "usage %s to %s\n", rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	head := make([]string, 0, len(rep.GroupBy)+12)
	for _, g := range rep.GroupBy {
		head = append(head, strings.ToUpper(g))
	}
	head = append(head, "REQUESTS", "ERRORS", "TOKENS IN", "TOKENS OUT", "MARGINAL $", "EFFECTIVE $", "BILLED $",
		"REFERENCE $", "SAVED $", "CACHE $", "ROUTING $", "COMPRESSION $", "LOCAL $", "UNPRICED")
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	line := func(group []string, r ledger.Row) {
		cells := append(group, fmt.Sprint(r.Requests), fmt.Sprint(r.Errors),
			fmt.Sprintf("%d", r.PromptTokens), fmt.Sprint(r.CompletionTokens),
			usd(r.CostUSD), usd(r.EffectiveCostUSD), usd(r.BilledUSD), usd(r.ReferenceUSD), usd(r.SavingsUSD),
			usd(r.Savings.Cache), usd(r.Savings.Routing), usd(r.Savings.Compression), usd(r.Savings.Local), fmt.Sprint(r.Unpriced))
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	for _, r := range rep.Rows {
		g := make([]string, len(rep.GroupBy))
		for i, k := range rep.GroupBy {
			g[i] = dash(r.Group[k])
		}
		line(g, r)
	}
	total := make([]string, len(rep.GroupBy))
	for i := range total {
		total[i] = ""
	}
	if len(total) > 0 {
		total[0] = "total"
	}
	line(total, rep.Total)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "hardware over the period %s, of which idle days no request carries %s\n", usd(rep.HardwareUSD), usd(rep.IdleUSD))
	if rep.Total.Unpriced > 0 {
		fmt.Fprintf(w, "%d requests went to targets without a price: their cost is unknown and left out of costs and savings\n", rep.Total.Unpriced)
	}
	return nil
}

func usd(v float64) string { return fmt.Sprintf("%.6f", v) }

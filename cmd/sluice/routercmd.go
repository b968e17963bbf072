package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/router/classify"
)

const routerUsage = `Usage: sluice router <command> [flags]

The classifier behind model "auto" (see docs/routing.md):

  sluice router data  --routellm DIR --out DIR      RouteLLM's files as labelled JSONL
  sluice router train --data FILE [--out FILE]      fit weights to labelled JSONL
  sluice router eval  --data FILE [--weights FILE]  APGR and strong share at 95% quality
  sluice router score [--weights FILE] TEXT...      score one prompt and say why

Run "sluice router <command> -h" for a command's flags.
`

// defaultRouteData is RouteLLM's published data, relative to the repository root.
const defaultRouteData = "../shared/data/route"

func routerCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, routerUsage)
		if len(args) == 0 {
			return errors.New("router: name a command (data, train, eval, score)")
		}
		return nil
	}
	switch args[0] {
	case "data":
		return routerData(args[1:], stdout, stderr)
	case "train":
		return routerTrain(args[1:], stdout, stderr)
	case "eval":
		return routerEval(args[1:], stdout, stderr)
	case "score":
		return routerScore(args[1:], stdout, stderr)
	}
	return fmt.Errorf("router: unknown command %q (data, train, eval, score)", args[0])
}

func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, positional bool) (done bool, err error) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return true, err
	}
	if !positional && fs.NArg() > 0 {
		return true, fmt.Errorf("%s: unexpected arguments %q", fs.Name(), fs.Args())
	}
	return false, nil
}

// routerData is `sluice router data`: RouteLLM's MMLU and GSM8K files become train.jsonl
// and MT-Bench becomes mt_bench.jsonl (per turn) and mt_bench_turn1.jsonl (routed on the
// first turn), all in the training format.
func routerData(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("router data", flag.ContinueOnError)
	dir := fs.String("routellm", defaultRouteData, "RouteLLM data directory (routellm_mmlu, routellm_gsm8k, routellm_mt_bench)")
	out := fs.String("out", ".", "directory to write train.jsonl, mt_bench.jsonl and mt_bench_turn1.jsonl into")
	if done, err := parseFlags(fs, args, stderr, false); done {
		return err
	}
	train, dropped, err := classify.RouteLLMTrain(*dir)
	if err != nil {
		return err
	}
	if len(dropped) > 0 {
		fmt.Fprintf(stdout, "left out (a model scores below chance: unparsed answers): %v\n", dropped)
	}
	perTurn, firstTurn, err := classify.RouteLLMMTBench(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		xs   []classify.Example
	}{{"train.jsonl", train}, {"mt_bench.jsonl", perTurn}, {"mt_bench_turn1.jsonl", firstTurn}} {
		if err := writeExamples(filepath.Join(*out, f.name), f.xs); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d examples\n", filepath.Join(*out, f.name), len(f.xs))
	}
	return nil
}

func writeExamples(path string, xs []classify.Example) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := classify.WriteJSONL(f, xs); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

func readExamples(path string) ([]classify.Example, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	xs, err := classify.ReadJSONL(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(xs) == 0 {
		return nil, fmt.Errorf("%s: no examples", path)
	}
	return xs, nil
}

// routerTrain is `sluice router train`.
func routerTrain(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("router train", flag.ContinueOnError)
	data := fs.String("data", "", "labelled JSONL to train on (see docs/routing.md)")
	routellm := fs.String("routellm", "", "train on RouteLLM's MMLU+GSM8K files in this directory instead of --data")
	out := fs.String("out", "weights.json", "weights file to write")
	cv := fs.Int("cv", 0, "also report K-fold cross-validated AUC and APGR on the training data (0: off)")
	cvSource := fs.Bool("cv-by-source", false, "cross-validate over whole sources (held-out subjects unseen in training)")
	o := classify.DefaultTrainOptions()
	fs.IntVar(&o.HashBits, "hash-bits", o.HashBits, "hashed-word table size in bits (-1: no hashed words)")
	fs.Float64Var(&o.L2, "l2", o.L2, "L2 penalty on the dense feature weights")
	fs.Float64Var(&o.L2Hash, "l2-hash", o.L2Hash, "L2 penalty on the hashed-word weights")
	fs.IntVar(&o.MaxIter, "max-iter", o.MaxIter, "most L-BFGS iterations")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the cross-validation folds")
	fs.BoolVar(&o.BalanceSources, "balance-sources", o.BalanceSources, "give each source (mmlu, gsm8k, ...) the same total weight")
	fs.BoolVar(&o.BalanceSubsources, "balance-subsources", o.BalanceSubsources, "within each source, give every sub-source (mmlu/<subject>) the same total weight")
	fs.StringVar(&o.Label, "label", o.Label, "labels from scores: win (strong > weak) or gain (expected quality gain)")
	fs.BoolVar(&o.BalanceClasses, "balance-classes", o.BalanceClasses, "give strong and weak labels the same total weight")
	if done, err := parseFlags(fs, args, stderr, false); done {
		return err
	}
	var xs []classify.Example
	var err error
	switch {
	case *data != "" && *routellm != "":
		return errors.New("router train: --data and --routellm exclude each other")
	case *data != "":
		xs, err = readExamples(*data)
	case *routellm != "":
		xs, _, err = classify.RouteLLMTrain(*routellm)
	default:
		return errors.New("router train: --data FILE is required")
	}
	if err != nil {
		return err
	}
	f, err := classify.Train(xs, o)
	if err != nil {
		return err
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "trained on %d examples (%.1f%% labelled strong, weighted) in %d iterations (converged: %v, loss %.6f): wrote %s (%d bytes)\n",
		f.Training.Examples, 100*f.Training.Positives, f.Training.Iterations, f.Training.Converged, f.Training.Loss, *out, len(b)+1)
	fmt.Fprintln(stdout, "dense weights:")
	for i, n := range f.Features {
		fmt.Fprintf(stdout, "  %-14s %+.3f  (mean %.3f)\n", n, f.Weights[i], f.Means[i])
	}
	fmt.Fprintf(stdout, "  %-14s %+.3f\n", "bias", f.Bias)
	if *cv > 0 {
		scores, folds, err := classify.CrossValidate(xs, o, *cv, *cvSource)
		if err != nil {
			return err
		}
		return writeCV(stdout, xs, scores, folds, *cv)
	}
	return nil
}

// writeCV prints held-out AUC and APGR overall and per top-level source, and the mean
// and standard error of APGR over the folds.
func writeCV(w io.Writer, xs []classify.Example, scores []float64, folds []int, k int) error {
	perFold := make([][]classify.Item, k)
	for i := range xs {
		if xs[i].HasScores() {
			perFold[folds[i]] = append(perFold[folds[i]], classify.Item{Score: scores[i], Strong: *xs[i].Strong, Weak: *xs[i].Weak})
		}
	}
	var apgrs []float64
	for _, items := range perFold {
		if ev, err := classify.Evaluate(items); err == nil {
			apgrs = append(apgrs, ev.APGR)
		}
	}
	groups := map[string][]classify.Item{}
	var names []string
	for i := range xs {
		if !xs[i].HasScores() {
			continue
		}
		it := classify.Item{Score: scores[i], Strong: *xs[i].Strong, Weak: *xs[i].Weak}
		src, _, _ := strings.Cut(xs[i].Source, "/")
		if src == "" {
			src = "(none)"
		}
		for _, g := range []string{"all", src} {
			if _, ok := groups[g]; !ok {
				names = append(names, g)
			}
			groups[g] = append(groups[g], it)
		}
	}
	fmt.Fprintf(w, "%d-fold cross-validation (held-out scores):\n", k)
	for _, g := range names {
		ev, err := classify.Evaluate(groups[g])
		if err != nil {
			fmt.Fprintf(w, "  %-8s n=%d: %v\n", g, len(groups[g]), err)
			continue
		}
		fmt.Fprintf(w, "  %-8s n=%-6d AUC %.4f  APGR %.4f  strong share @95%% %.1f%%\n",
			g, len(groups[g]), classify.AUC(groups[g]), ev.APGR, 100*ev.ShareAt95)
	}
	if len(apgrs) > 1 {
		var mean, ss float64
		for _, a := range apgrs {
			mean += a
		}
		mean /= float64(len(apgrs))
		for _, a := range apgrs {
			ss += (a - mean) * (a - mean)
		}
		se := math.Sqrt(ss/float64(len(apgrs)-1)) / math.Sqrt(float64(len(apgrs)))
		fmt.Fprintf(w, "  per-fold APGR mean %.4f, standard error %.4f\n", mean, se)
	}
	return nil
}

func loadModel(path string) (*classify.Model, error) {
	if path == "" {
		return classify.Default()
	}
	return classify.Load(path)
}

// routerEval is `sluice router eval`.
func routerEval(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("router eval", flag.ContinueOnError)
	data := fs.String("data", "", "labelled JSONL with strong and weak scores per request")
	weights := fs.String("weights", "", "weights file (default: the embedded one)")
	asJSON := fs.Bool("json", false, "after the table, print the figures as one JSON object on the last line")
	if done, err := parseFlags(fs, args, stderr, false); done {
		return err
	}
	if *data == "" {
		return errors.New("router eval: --data FILE is required")
	}
	m, err := loadModel(*weights)
	if err != nil {
		return err
	}
	xs, err := readExamples(*data)
	if err != nil {
		return err
	}
	c, err := classify.Compare(m, xs)
	if err != nil {
		return err
	}
	if err := c.WriteTable(stdout, *data); err != nil {
		return err
	}
	if *asJSON {
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", b)
	}
	return nil
}

// routerScore is `sluice router score`.
func routerScore(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("router score", flag.ContinueOnError)
	weights := fs.String("weights", "", "weights file (default: the embedded one)")
	if done, err := parseFlags(fs, args, stderr, true); done {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("router score: give the prompt text as arguments")
	}
	m, err := loadModel(*weights)
	if err != nil {
		return err
	}
	for _, p := range fs.Args() {
		s, why := m.Score(&models.Request{Kind: models.KindChat, Messages: []models.Message{{Role: "user", Content: p}}})
		fmt.Fprintf(stdout, "%.3f\t%s\t%.60q\n", s, why, p)
	}
	return nil
}

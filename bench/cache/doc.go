// Package cache is `sluice bench cache`: the answer cache's lookup latency (exact, and
// semantic at growing index sizes), its memory per entry, and its quality on public
// data: GPTCache's benchmark protocol on its mock_data.json and ROC-AUC, precision and
// recall on labelled Quora question pairs.
//
// It imports cache and models only.
package cache

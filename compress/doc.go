// Package compress owns prompt pruning and token counting. Token counts come from a real
// tokenizer (github.com/sugarme/tokenizer loading a Hugging Face tokenizer.json); usage
// estimates and pruning budgets are measured in those tokens.
//
// It must not import gateway, scheduler, router or runtime/*.
package compress

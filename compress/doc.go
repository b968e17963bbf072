// Package compress owns prompt compression and token counting.
//
// The Stage sits between the router and the scheduler with the scheduler's Open and
// prunes long contexts and histories when a model, a tier or the request's
// X-Sluice-Compress header asks for it: the Compressor segments the prompt (sentences,
// clauses, structured lines, code blocks), ranks units by BM25 relevance to the final
// question, drops near-duplicates, keeps the most relevant units that fit, then drops the
// least informative words of what is left, scored by self-information under a unigram
// language model (LM: SUBTLEX-US word frequencies, kept current from the traffic) or, in
// the model-scored mode, by a small model's log-probabilities through llama-server
// (LlamaScorer). Instructions and the question stay verbatim; numbers, identifiers, URLs,
// code, JSON and tables are kept or dropped whole. See docs/compression.md.
//
// Token counts come from a real tokenizer (github.com/sugarme/tokenizer loading a
// Hugging Face tokenizer.json), or a fast estimate where the library cannot run one.
//
// It must not import gateway, scheduler, router or runtime/*.
package compress

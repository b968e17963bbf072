// Package compress is `sluice bench compress`: it measures what prompt compression
// (package compress) keeps and how fast it runs, against three baselines in the same
// table: random word dropping, keeping the first N tokens, and keeping the sentences with
// the most words in common with the question.
//
// Sets: SQuAD v1.1 questions (XQuAD by default) against their own paragraph and against
// their whole five-paragraph article, scored by the share of gold answers that survive
// verbatim; QMSum meeting transcripts (long contexts), scored by the share of the
// relevant turns' words kept. At each target ratio it prints the ratio achieved (in the
// target tokenizer's tokens when one is given) and throughput in tokens per second per
// core (process CPU time, so a loaded machine does not distort it).
//
// It imports compress and models only; nothing on the request path imports it.
package compress

// Package tinymodel generates small llama-architecture GGUF models with random weights,
// so tests can run real llama-server and Ollama without downloading weights.
//
// Generate writes a deterministic model (same vocabulary and Options: byte-identical
// file) that carries a real tokenizer: LoadVocab reads a Hugging Face tokenizer.json of
// the Llama-2 SentencePiece kind (scripts/fetch-vocab.sh downloads one), NewVocab builds
// a small synthetic vocabulary for unit tests. The defaults give a ~9 MB model (dim 64,
// 2 blocks, 4 heads, feed-forward 128, context 2048, F16 matrices, F32 norms); Options
// make a bigger one for GPU tests, or an embedding model (mean pooling).
//
// The weights are random, so the model talks nonsense, but they are shaped so that the
// servers behave: the output projection is untied from the embeddings, and tokens that
// would produce invalid UTF-8 or degenerate text (byte, control and unknown tokens,
// and tokens with nothing visible in them) get strongly negative logits. Channel 0 of the residual
// stream is a constant that no block writes to, so after the final norm it is always
// positive, and those tokens' output rows are a large negative weight on it alone.
// A side effect: the model never emits end-of-sequence, so generation always runs to
// the token limit. The GGUF carries a ChatML chat template (ChatTemplate) that
// llama-server and Ollama both recognise.
//
// Dependencies: the standard library and models/gguf only.
package tinymodel

package sched

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// words is the vocabulary of the generated system prompts: common English words, so the
// prompts tokenize like real text (about 1.1 to 1.3 tokens a word).
const words = `the of and to in is was that for on with as by at from this have not are but had
his they which one you were all her she there would their we him been has when who will more no
if out so said what up its about into than them can only other new some could time these two may
then do first any my now such like our over man me even most made after also did many before must
through back years where much your way well down should because each just those people how too
little state good very make world still own see men work long get here between both life being
under never day same another know while last might us great old year off come since against go
came right used take three customer order account invoice refund delivery shipping warehouse
policy contract support ticket priority escalate manager team product service price discount
payment card bank transfer balance report summary answer question polite short clear formal
friendly careful accurate always never avoid mention include explain describe confirm verify
check request details address phone email name date number reference code status update change
cancel return exchange warranty repair replace damaged missing late early weekend holiday office
hours region country language english german french spanish italian dutch legal privacy data
personal consent security password login access role admin user guest partner supplier vendor`

// system builds tenant t's system prompt of n words: a fixed opening naming the tenant,
// then deterministic pseudo-sentences drawn from words with a generator seeded by (seed, t).
func system(seed uint64, t, n int) string {
	vocab := strings.Fields(words)
	rng := rand.New(rand.NewPCG(seed, uint64(t)+1))
	var b strings.Builder
	fmt.Fprintf(&b, "You are the assistant of company number %d. Follow these instructions.", t)
	for w := 0; w < n; {
		k := 6 + rng.IntN(14)
		for i := 0; i < k && w < n; i, w = i+1, w+1 {
			s := vocab[rng.IntN(len(vocab))]
			if i == 0 {
				s = strings.ToUpper(s[:1]) + s[1:]
			}
			b.WriteByte(' ')
			b.WriteString(s)
		}
		b.WriteByte('.')
	}
	return b.String()
}

// tokenizer counts tokens with the engine's own tokenizer.
type tokenizer func(ctx context.Context, text string) (int, error)

// systemPrompts builds every tenant's system prompt and sizes it to about target tokens
// as the engine counts them (the word count is corrected from a measured prompt, then
// every prompt is measured). It returns the prompts and their mean token count.
func systemPrompts(ctx context.Context, tok tokenizer, seed uint64, tenants, target int) ([]string, float64, error) {
	nw := target * 3 / 4
	for range 4 {
		n, err := tok(ctx, system(seed, 0, nw))
		if err != nil {
			return nil, 0, fmt.Errorf("bench sched: tokenize: %w", err)
		}
		if d := n - target; d > -target/200-1 && d < target/200+1 {
			break
		}
		nw = max(1, int(float64(nw)*float64(target)/float64(n)+0.5))
	}
	out := make([]string, tenants)
	total := 0
	for t := range out {
		out[t] = system(seed, t, nw)
		n, err := tok(ctx, out[t])
		if err != nil {
			return nil, 0, fmt.Errorf("bench sched: tokenize: %w", err)
		}
		total += n
	}
	return out, float64(total) / float64(tenants), nil
}

// question is request i's user message: short and unique.
func question(rng *rand.Rand, i int) string {
	vocab := strings.Fields(words)
	var b strings.Builder
	fmt.Fprintf(&b, "Request %d: please", i)
	for range 6 + rng.IntN(6) {
		b.WriteByte(' ')
		b.WriteString(vocab[rng.IntN(len(vocab))])
	}
	b.WriteByte('?')
	return b.String()
}

// arrival is one request of the open-loop sequence.
type arrival struct {
	at       time.Duration // from the start of the run
	tenant   int
	question string
}

// arrivals draws n Poisson arrivals at rate per second, each from a tenant drawn
// uniformly (skew 0) or with Zipf popularity (tenant k has weight 1/(k+1)^skew). The
// same seed gives the same sequence, whatever the policy.
func arrivals(seed uint64, n, tenants int, rate, skew float64) []arrival {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	cdf := make([]float64, tenants)
	sum := 0.0
	for k := range cdf {
		sum += 1 / math.Pow(float64(k+1), skew)
		cdf[k] = sum
	}
	out := make([]arrival, n)
	var t float64
	for i := range out {
		t += rng.ExpFloat64() / rate
		u := rng.Float64() * sum
		k := 0
		for k < tenants-1 && cdf[k] < u {
			k++
		}
		out[i] = arrival{at: time.Duration(t * float64(time.Second)), tenant: k, question: question(rng, i)}
	}
	return out
}

package cache

import (
	"math/rand/v2"
	"strings"
)

// generator makes support-style questions for the latency runs: templates filled from
// word lists (millions of distinct questions), and rewordings of them (another opener,
// a word dropped) as the lookups.
type generator struct {
	r *rand.Rand
}

func newGenerator(seed uint64) *generator {
	return &generator{r: rand.New(rand.NewPCG(seed, 0x5eed))}
}

var (
	openers = [][2]string{
		{"How do I", "How can I"}, {"What is the best way to", "How should I"}, {"Can I", "Is it possible to"},
		{"Where can I", "Where do I"}, {"Why can't I", "Why am I unable to"}, {"Is there a way to", "Can I"},
	}
	verbs = strings.Fields(`change update cancel return track reset delete export import share renew upgrade
		downgrade transfer verify connect disconnect activate deactivate configure install uninstall sync
		backup restore print download upload rename move merge split lock unlock block report refund
		replace repair register archive schedule reschedule pause resume order reorder claim redeem
		apply check compare edit enable disable encrypt decrypt extend limit migrate recover remove`)
	nouns = strings.Fields(`password account order parcel invoice subscription card address email phone
		profile payment plan warranty device router printer laptop tablet camera watch headset license key
		voucher coupon gift delivery package refund receipt contract booking ticket reservation appointment
		membership wallet balance statement budget report dashboard project folder file photo video album
		playlist calendar contact message chat group team workspace channel server database cluster backup
		bucket domain certificate token session cookie notification alert reminder review rating comment
		post page store cart wishlist product item size color model firmware driver app extension plugin
		theme template form survey poll badge avatar username nickname signature language currency timezone`)
	adjs = strings.Fields(`old new second main shared business personal default backup primary secondary
		monthly yearly premium free trial international local express standard digital physical spare`)
	tails = []string{"", " online", " from my phone", " after the deadline", " without a fee", " in the app",
		" on the website", " for my family", " before it ships", " right now"}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

// question returns a new question.
func (g *generator) question() string {
	o := pick(g.r, openers)[0]
	return o + " " + pick(g.r, verbs) + " my " + pick(g.r, adjs) + " " + pick(g.r, nouns) + " " + pick(g.r, nouns) + pick(g.r, tails) + "?"
}

// reword returns q said another way: the other opener of its pair, or with its
// adjective dropped.
func (g *generator) reword(q string) string {
	for _, o := range openers {
		if rest, ok := strings.CutPrefix(q, o[0]+" "); ok {
			if g.r.IntN(2) == 0 {
				return o[1] + " " + rest
			}
			f := strings.Fields(rest)
			if len(f) > 3 {
				f = append(f[:2], f[3:]...) // drop the adjective after "my"
			}
			return o[0] + " " + strings.Join(f, " ")
		}
	}
	return q
}

package classify

import (
	"regexp"

	"github.com/sluice-llm/sluice/models"
)

// RegexPattern is the keyword router of the common kind that evaluations compare against:
// a request that mentions code, math, analysis or reasoning goes to the strong model.
// Its score is the number of keyword matches in the user text, so a threshold on it
// sweeps from "any keyword" to "many keywords".
const RegexPattern = `(?i)\b(code|coding|program|function|python|javascript|sql|debug|bug|algorithm|implement|` +
	`math|calculate|compute|solve|equation|prove|proof|derive|probability|` +
	`analy[sz]e|analysis|explain|reason|reasoning|step[- ]by[- ]step|compare|evaluate|` +
	`optimi[sz]e|complex|design|detailed|research)\b`

// RegexRouter scores requests by keyword matches (RegexPattern). It is a baseline for
// evaluations, not for the request path.
type RegexRouter struct{ re *regexp.Regexp }

// NewRegexRouter compiles RegexPattern.
func NewRegexRouter() *RegexRouter { return &RegexRouter{re: regexp.MustCompile(RegexPattern)} }

// Score is the number of keyword matches in r's user and system text.
func (rr *RegexRouter) Score(r *models.Request) float64 {
	n := 0
	for i := range r.Messages {
		if m := &r.Messages[i]; m.Role != "assistant" && m.Role != "tool" {
			n += len(rr.re.FindAllStringIndex(m.Content, -1))
		}
	}
	for _, p := range r.Prompt {
		n += len(rr.re.FindAllStringIndex(p, -1))
	}
	return float64(n)
}

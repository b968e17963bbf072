package proc

import "fmt"

// State is where a supervised process is in its life.
type State uint8

// States.
const (
	Stopped  State = iota // not running, not wanted
	Starting              // launched, waiting for health
	Ready                 // healthy, serving
	Draining              // stop asked: finishing requests in flight
	Backoff               // died; waiting before the next start
	Failed                // gave up (bad binary, too many crashes in a row)
)

func (s State) String() string {
	switch s {
	case Stopped:
		return "stopped"
	case Starting:
		return "starting"
	case Ready:
		return "ready"
	case Draining:
		return "draining"
	case Backoff:
		return "backoff"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// transitions lists every allowed change.
var transitions = [...][]State{
	Stopped:  {Starting},
	Starting: {Ready, Backoff, Draining, Failed, Stopped},
	Ready:    {Backoff, Draining, Stopped},
	Draining: {Stopped},
	Backoff:  {Starting, Stopped, Failed},
	Failed:   {Starting, Stopped},
}

// CanTransition reports whether from -> to is allowed.
func CanTransition(from, to State) bool {
	if int(from) >= len(transitions) {
		return false
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

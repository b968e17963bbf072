package dockerlint

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// TestDockerfileBuildChecks ports the checks that `docker build --check` runs in
// BuildKit's dockerfile2llb (which this test does not import: it would pull in the whole
// LLB solver) over the parsed instructions. Rule names are BuildKit's
// (docs.docker.com/reference/build-checks). The casing, MaintainerDeprecated and
// parser-level rules run inside instructions.Parse (TestDockerfileParsesCleanly).
func TestDockerfileBuildChecks(t *testing.T) {
	d := load(t)
	for _, rule := range []struct {
		name  string
		check func(d *dockerfile) []string
	}{
		{"ConsistentInstructionCasing", checkCasing},
		{"JSONArgsRecommended", checkJSONArgs},
		{"DuplicateStageName", checkStageNames},
		{"UndefinedArgInFrom", checkArgsInFrom},
		{"MultipleInstructionsDisallowed", checkSingleInstructions},
		{"SecretsUsedInArgOrEnv", checkSecrets},
		{"LegacyKeyValueFormat", checkKeyValueFormat},
		{"WorkdirRelativePath", checkWorkdirs},
		{"ExposeInvalidFormat", checkExpose},
		{"UndefinedVar", checkUndefinedVars},
	} {
		for _, p := range rule.check(d) {
			t.Errorf("%s: %s", rule.name, p)
		}
	}
}

func checkCasing(d *dockerfile) []string {
	var out []string
	for _, n := range d.result.AST.Children {
		word, _, _ := strings.Cut(strings.TrimSpace(n.Original), " ")
		if word != strings.ToUpper(word) {
			out = append(out, fmt.Sprintf("line %d: %s is not upper case like the others", n.StartLine, word))
		}
	}
	return out
}

func checkJSONArgs(d *dockerfile) []string {
	var out []string
	for i := range d.stages {
		for _, c := range d.stages[i].Commands {
			var prepend bool
			switch c := c.(type) {
			case *instructions.EntrypointCommand:
				prepend = c.PrependShell
			case *instructions.CmdCommand:
				prepend = c.PrependShell
			default:
				continue
			}
			if prepend {
				out = append(out, fmt.Sprintf("line %d: %s in shell form: signals would not reach the process", line(c.Location()), c.Name()))
			}
		}
	}
	return out
}

func checkStageNames(d *dockerfile) []string {
	var out []string
	seen := map[string]bool{}
	for _, st := range d.stages {
		n := strings.ToLower(st.Name)
		switch {
		case n == "":
			out = append(out, fmt.Sprintf("line %d: unnamed stage", line(st.Location)))
		case seen[n]:
			out = append(out, fmt.Sprintf("line %d: stage %s is defined twice", line(st.Location), st.Name))
		case n == "scratch" || n == "context": // ReservedStageName
			out = append(out, fmt.Sprintf("line %d: stage name %s is reserved", line(st.Location), st.Name))
		}
		seen[n] = true
	}
	return out
}

var varRef = regexp.MustCompile(`\$\{?(\w+)`)

// checkArgsInFrom also covers InvalidDefaultArgInFrom: with the defaults filled in, every
// FROM is a complete image reference.
func checkArgsInFrom(d *dockerfile) []string {
	var out []string
	ref := regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]*:[\w][\w.-]*$`)
	for _, st := range d.stages {
		for _, m := range varRef.FindAllStringSubmatch(st.BaseName, -1) {
			if _, ok := d.meta[m[1]]; !ok {
				out = append(out, fmt.Sprintf("line %d: FROM uses %s, which no global ARG defines", line(st.Location), m[1]))
			}
		}
		if b := d.base(&st); !ref.MatchString(b) {
			out = append(out, fmt.Sprintf("line %d: FROM %s is not a tagged image reference with the default ARGs", line(st.Location), b))
		}
	}
	return out
}

func checkSingleInstructions(d *dockerfile) []string {
	var out []string
	for _, st := range d.stages {
		count := map[string]int{}
		for _, c := range st.Commands {
			switch c.(type) {
			case *instructions.CmdCommand, *instructions.EntrypointCommand, *instructions.HealthCheckCommand:
				if count[c.Name()]++; count[c.Name()] == 2 {
					out = append(out, fmt.Sprintf("line %d: stage %s has more than one %s", line(c.Location()), st.Name, c.Name()))
				}
			}
		}
	}
	return out
}

// checkSecrets flags ARG and ENV names that look like secrets (BuildKit's patterns):
// they end up in the image's history.
func checkSecrets(d *dockerfile) []string {
	deny := regexp.MustCompile(`(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)`)
	allow := regexp.MustCompile(`(?i)(?:_|^)(?:public|file|version)(?:_|$)`)
	var out []string
	flag := func(c instructions.Command, k string) {
		if deny.MatchString(k) && !allow.MatchString(k) {
			out = append(out, fmt.Sprintf("line %d: %s %s looks like a secret", line(c.Location()), c.Name(), k))
		}
	}
	for i := range d.stages {
		for _, c := range d.stages[i].Commands {
			switch c := c.(type) {
			case *instructions.ArgCommand:
				for _, a := range c.Args {
					flag(c, a.Key)
				}
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					flag(c, kv.Key)
				}
			}
		}
	}
	for k := range d.meta {
		if deny.MatchString(k) && !allow.MatchString(k) {
			out = append(out, fmt.Sprintf("global ARG %s looks like a secret", k))
		}
	}
	return out
}

func checkKeyValueFormat(d *dockerfile) []string {
	var out []string
	for i := range d.stages {
		for _, c := range d.stages[i].Commands {
			var kvs instructions.KeyValuePairs
			switch c := c.(type) {
			case *instructions.EnvCommand:
				kvs = c.Env
			case *instructions.LabelCommand:
				kvs = c.Labels
			}
			for _, kv := range kvs {
				if kv.NoDelim {
					out = append(out, fmt.Sprintf("line %d: %s %s without '='", line(c.Location()), c.Name(), kv.Key))
				}
			}
		}
	}
	return out
}

func checkWorkdirs(d *dockerfile) []string {
	var out []string
	for i := range d.stages {
		for _, w := range commands[*instructions.WorkdirCommand](&d.stages[i]) {
			if !path.IsAbs(w.Path) {
				out = append(out, fmt.Sprintf("line %d: WORKDIR %s is relative", line(w.Location()), w.Path))
			}
		}
	}
	return out
}

// checkExpose also covers ExposeProtoCasing.
func checkExpose(d *dockerfile) []string {
	var out []string
	port := regexp.MustCompile(`^\d+(-\d+)?(/(tcp|udp|sctp))?$`)
	for i := range d.stages {
		for _, e := range commands[*instructions.ExposeCommand](&d.stages[i]) {
			for _, p := range e.Ports {
				if !port.MatchString(p) {
					out = append(out, fmt.Sprintf("line %d: EXPOSE %s is not PORT[/tcp|udp|sctp]", line(e.Location()), p))
				}
			}
		}
	}
	return out
}

// checkUndefinedVars: variables that BuildKit expands itself (every instruction but RUN,
// CMD, ENTRYPOINT and HEALTHCHECK, whose shell does it) must be declared earlier in the
// stage by ARG or ENV. Variables the base images define are not known here, so none may
// be used.
func checkUndefinedVars(d *dockerfile) []string {
	var out []string
	for i := range d.stages {
		st := &d.stages[i]
		known := map[string]bool{}
		for _, c := range st.Commands {
			var text string
			switch c := c.(type) {
			case *instructions.RunCommand, *instructions.CmdCommand, *instructions.EntrypointCommand,
				*instructions.HealthCheckCommand:
				continue
			case *instructions.ArgCommand:
				for _, a := range c.Args {
					if a.Value != nil {
						text += " " + *a.Value
					}
				}
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					text += " " + kv.Value
				}
			case *instructions.CopyCommand:
				text = strings.Join(append(c.SourcePaths, c.DestPath, c.Chown, c.Chmod), " ")
			case *instructions.WorkdirCommand:
				text = c.Path
			case *instructions.UserCommand:
				text = c.User
			case *instructions.ExposeCommand:
				text = strings.Join(c.Ports, " ")
			}
			for _, m := range varRef.FindAllStringSubmatch(text, -1) {
				if !known[m[1]] {
					out = append(out, fmt.Sprintf("line %d: %s uses $%s, not declared before it in stage %s",
						line(c.Location()), c.Name(), m[1], st.Name))
				}
			}
			switch c := c.(type) {
			case *instructions.ArgCommand:
				for _, a := range c.Args {
					known[a.Key] = true
				}
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					known[kv.Key] = true
				}
			}
		}
	}
	return out
}

package config

import (
	"os"
	"strings"
)

// engineEnvNames are the variables of sluice's environment that engine processes inherit;
// engineEnvPrefixes the families of them. Everything else (API keys, cloud credentials,
// tokens) stays with sluice: an engine gets this and its own configured env only.
var (
	engineEnvNames    = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "LD_LIBRARY_PATH"}
	engineEnvPrefixes = []string{"LC_", "CUDA_", "NVIDIA_", "GGML_", "OLLAMA_"}
)

// EngineEnviron returns the part of environ ("KEY=value" entries) that engine processes
// inherit: PATH, HOME, USER, LOGNAME, the locale (LANG, LANGUAGE, LC_*), TZ, TMPDIR,
// LD_LIBRARY_PATH, and the CUDA_*, NVIDIA_*, GGML_* and OLLAMA_* families.
func EngineEnviron(environ []string) []string {
	out := make([]string, 0, 16)
	for _, kv := range environ {
		name, _, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if engineEnvAllowed(name) {
			out = append(out, kv)
		}
	}
	return out
}

func engineEnvAllowed(name string) bool {
	for _, n := range engineEnvNames {
		if name == n {
			return true
		}
	}
	for _, p := range engineEnvPrefixes {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return true
		}
	}
	return false
}

// OSEngineEnviron is EngineEnviron of this process's environment.
func OSEngineEnviron() []string { return EngineEnviron(os.Environ()) }

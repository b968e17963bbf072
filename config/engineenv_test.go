package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEngineEnviron(t *testing.T) {
	in := []string{"PATH=/usr/bin", "HOME=/root", "LANG=C.UTF-8", "LC_ALL=C", "CUDA_VISIBLE_DEVICES=0",
		"NVIDIA_VISIBLE_DEVICES=all", "LD_LIBRARY_PATH=/usr/local/cuda/lib64", "OLLAMA_MODELS=/m",
		"OPENAI_API_KEY=sk-secret", "SLUICE_API_KEY=sk-mine", "AWS_SECRET_ACCESS_KEY=x", "HF_TOKEN=hf_x",
		"CUDA_=odd", "PATHX=no", "broken"}
	got := EngineEnviron(in)
	want := []string{"PATH=/usr/bin", "HOME=/root", "LANG=C.UTF-8", "LC_ALL=C", "CUDA_VISIBLE_DEVICES=0",
		"NVIDIA_VISIBLE_DEVICES=all", "LD_LIBRARY_PATH=/usr/local/cuda/lib64", "OLLAMA_MODELS=/m"}
	if !slices.Equal(got, want) {
		t.Fatalf("EngineEnviron = %q, want %q", got, want)
	}
}

func TestLimitsDefaultsAndValidation(t *testing.T) {
	model := writeModel(t)
	env := mapEnv(map[string]string{"HOME": t.TempDir(), "M": model})
	c, err := Parse([]byte("server:\n  limits:\n    max_connections: -1\n    write_timeout: 2s\nengines:\n  - name: a\n    model_path: ${M}\n"), "t.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Server.Limits
	if l.MaxConnections != -1 || l.WriteTimeout != 2*time.Second || l.HeaderTimeout != 10*time.Second ||
		l.MaxConcurrentRequests != 1024 || l.MaxLargeBodies != 32 || l.MaxEngineLineBytes != 4<<20 {
		t.Fatalf("limits = %+v", l)
	}
	_, err = Parse([]byte("server:\n  limits:\n    max_engine_line_bytes: 10\nengines:\n  - name: a\n    model_path: ${M}\n"), "t.yaml", env)
	if err == nil || !strings.Contains(err.Error(), "server.limits.max_engine_line_bytes") {
		t.Fatalf("err = %v", err)
	}
	_, err = Parse([]byte("server:\n  limits:\n    max_conns: 10\nengines:\n  - name: a\n    model_path: ${M}\n"), "t.yaml", env)
	if err == nil || !strings.Contains(err.Error(), "unknown key server.limits.max_conns") {
		t.Fatalf("err = %v", err)
	}
}

func TestCheckExposure(t *testing.T) {
	for _, tc := range []struct {
		listen string
		keys   []string
		allow  bool
		err    bool
		notice string
	}{
		{"127.0.0.1:8080", nil, false, false, "this machine only"},
		{"localhost:8080", nil, false, false, "this machine only"},
		{"[::1]:8080", nil, false, false, "this machine only"},
		{"0.0.0.0:8080", nil, false, true, ""},
		{":8080", nil, false, true, ""},
		{"[::]:8080", nil, false, true, ""},
		{"10.0.0.5:8080", nil, false, true, ""},
		{"myhost:8080", nil, false, true, ""},
		{"0.0.0.0:8080", nil, true, false, "WARNING"},
		{"0.0.0.0:8080", []string{"sk-x"}, false, false, ""},
		{"0.0.0.0:8080", []string{"store"}, false, false, ""}, // keys in the key store only
	} {
		s := Server{Listen: tc.listen, AllowPublicWithoutKeys: tc.allow}
		for _, k := range tc.keys {
			s.APIKeys = append(s.APIKeys, APIKey{Key: k})
		}
		store := len(tc.keys) == 1 && tc.keys[0] == "store"
		if store {
			s.APIKeys = nil // the key is in the store, not the config
		}
		notice, err := s.CheckExposure(store)
		if (err != nil) != tc.err || !strings.Contains(notice, tc.notice) || (tc.notice == "" && notice != "") {
			t.Errorf("%s keys=%v allow=%v: notice %q err %v", tc.listen, tc.keys, tc.allow, notice, err)
		}
	}
}

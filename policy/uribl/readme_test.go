package uribl

import (
	"os"
	"strings"
	"testing"

	"github.com/go-viper/mapstructure/v2"
	"gopkg.in/yaml.v3"
)

// TestReadmeConfig: the configuration example of README.md decodes the way
// cmd/moat decodes config (unknown keys are errors) and validates.
func TestReadmeConfig(t *testing.T) {
	text, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var block string
	for _, part := range strings.Split(string(text), "```yaml\n")[1:] {
		body, _, _ := strings.Cut(part, "```")
		if strings.HasPrefix(body, "uribl:") {
			block = body
			break
		}
	}
	if block == "" {
		t.Fatal("README.md has no uribl: yaml example")
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatal(err)
	}
	var cfg Config
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook:  mapstructure.StringToTimeDurationHookFunc(),
		ErrorUnused: true,
		Result:      &cfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(doc["uribl"]); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate("uribl"); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Zones) != 5 || !cfg.Zones[2].IPs || cfg.Timeout != DefaultTimeout || cfg.MaxLookups != 20 {
		t.Errorf("decoded %+v", cfg)
	}
	if _, err := New(cfg, stuckResolver{}, Options{}); err != nil {
		t.Fatal(err)
	}
}

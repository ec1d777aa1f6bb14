package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// FuzzParse checks that no document makes Parse panic, and that its two
// outcomes are consistent: a *ValidationError with located problems, or a
// config that validates and renders.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, "../config.example.yaml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(minimal))
	f.Add([]byte("credentials: [{name: a, app_id: '1', app_secret: ${FUZZ_SECRET}, advertiser_ids: [1, 1]}]\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("credentials:\n- name: a\n  <<: {app_id: '1'}\n  app_secret: $${x}\n"))
	f.Setenv("FUZZ_SECRET", "s")

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data, "fuzz.yaml")
		if err != nil {
			var ve *config.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse error %T is not a *ValidationError: %v", err, err)
			}
			if len(ve.Problems) == 0 {
				t.Fatalf("ValidationError without problems")
			}
			for _, p := range ve.Problems {
				if p.Message == "" || p.Line < 0 {
					t.Fatalf("bad problem %+v", p)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse succeeded but Validate() = %v", err)
		}
		if _, ok := c.DefaultCredential(); !ok && len(c.Credentials) == 1 {
			t.Fatalf("a lone credential is not the default")
		}
		if _, err := c.Redacted(); err != nil {
			t.Fatalf("Redacted() = %v", err)
		}
	})
}

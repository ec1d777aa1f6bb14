package e2e

import (
	"strings"
	"testing"
)

// The final log scan of TestMain is only worth its "none found" if it does
// find a secret: feed it logs with one planted.
func TestSecretScanCatchesAPlantedLeak(t *testing.T) {
	const planted = "PLANTEDSECRETVALUE7Q2X9Z4W"
	clean := `{"level":"INFO","msg":"request","credential":"main","status":200}` + "\n"
	leaky := clean + `{"level":"DEBUG","msg":"refresh","token":"` + planted + `"}` + "\n" + clean
	secrets := []string{"another-secret-not-logged", planted}

	if leaks := scanForSecrets([]string{clean, clean}, secrets); len(leaks) != 0 {
		t.Fatalf("clean logs reported as leaking: %v", leaks)
	}
	leaks := scanForSecrets([]string{clean, leaky}, secrets)
	if len(leaks) != 1 {
		t.Fatalf("planted leak: got %d reports %v, want 1", len(leaks), leaks)
	}
	// The report names the secret by its start and quotes the line it is
	// in, so the leaking log statement can be found.
	if !strings.Contains(leaks[0], planted[:6]) || !strings.Contains(leaks[0], `"msg":"refresh"`) {
		t.Errorf("report %q does not point at the leaking line", leaks[0])
	}
}

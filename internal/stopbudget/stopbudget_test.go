package stopbudget

import (
	"testing"
	"time"
)

// Serve finds and evaluates each bound in serve's source.
func TestServe(t *testing.T) {
	sum, each, err := Serve()
	if err != nil {
		t.Fatal(err)
	}
	var total time.Duration
	for _, name := range Bounds {
		if each[name] <= 0 {
			t.Errorf("%s = %v, want a positive duration", name, each[name])
		}
		total += each[name]
	}
	if sum != total {
		t.Errorf("Serve = %v, the bounds add up to %v", sum, total)
	}
	t.Logf("serve stops within %v: %v", sum, each)
}

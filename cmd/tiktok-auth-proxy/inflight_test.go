package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestInFlight: wait returns once the running handlers have returned,
// or after its bound with how many still run.
func TestInFlight(t *testing.T) {
	var f inFlight
	if n := f.wait(time.Hour); n != 0 {
		t.Fatalf("wait with no handler = %d", n)
	}
	started, release := make(chan struct{}, 2), make(chan struct{})
	h := f.wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		started <- struct{}{}
		<-release
	}))
	finished := make(chan struct{}, 2)
	for range 2 {
		go func() {
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
			finished <- struct{}{}
		}()
		<-started
	}
	if n := f.wait(time.Millisecond); n != 2 {
		t.Errorf("wait past its bound = %d, want 2 still running", n)
	}
	waited := make(chan int, 1)
	go func() { waited <- f.wait(time.Hour) }()
	close(release)
	if n := <-waited; n != 0 {
		t.Errorf("wait = %d after the handlers returned, want 0", n)
	}
	<-finished
	<-finished
}

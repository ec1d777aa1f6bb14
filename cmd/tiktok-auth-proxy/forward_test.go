package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A request inside a tunnel runs on a hijacked connection that
// http.Server.Shutdown does not wait for, so it is counted among the
// handlers from its round trip until its response body is closed.
func TestCountedTransport(t *testing.T) {
	var n inFlight
	rt := countedTransport{n: &n, rt: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("report"))}, nil
	})}
	resp, err := rt.RoundTrip(&http.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.wait(0); got != 1 {
		t.Errorf("%d running while the body is open, want 1", got)
	}
	resp.Body.Close()
	resp.Body.Close()
	if got := n.wait(0); got != 0 {
		t.Errorf("%d running after the body was closed (twice), want 0", got)
	}

	failing := countedTransport{n: &n, rt: roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, io.ErrUnexpectedEOF
	})}
	if _, err := failing.RoundTrip(&http.Request{}); err == nil {
		t.Fatal("want the error")
	}
	if got := n.wait(0); got != 0 {
		t.Errorf("%d running after a failed round trip, want 0", got)
	}
}

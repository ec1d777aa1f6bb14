package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A request inside a tunnel runs on a hijacked connection that
// http.Server.Shutdown does not wait for, so it is counted among the
// handlers from its round trip until its context ends, which the forward
// proxy does once the answer is written in full: closing the body is too
// early (goproxy closes it before a chunked answer's last line). A failed
// round trip is counted the same way, since its error answer is written
// too.
func TestCountedTransport(t *testing.T) {
	var n inFlight
	ok := countedTransport{n: &n, rt: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("report"))}, nil
	})}
	failing := countedTransport{n: &n, rt: roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, io.ErrUnexpectedEOF
	})}
	for _, tc := range []struct {
		name    string
		rt      countedTransport
		wantErr bool
	}{{"answered", ok, false}, {"failed", failing, true}} {
		ctx, cancel := context.WithCancel(context.Background())
		r, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://business-api.tiktok.com/", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tc.rt.RoundTrip(r)
		if (err != nil) != tc.wantErr {
			t.Fatalf("%s: error %v", tc.name, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
		if got := n.wait(0); got != 1 {
			t.Errorf("%s: %d running before the request's context ended, want 1", tc.name, got)
		}
		cancel()
		// A guard against a hang, not a timing assertion: the count ends
		// just after the context does.
		if got := n.wait(10 * time.Second); got != 0 {
			t.Errorf("%s: %d running after the request's context ended, want 0", tc.name, got)
		}
	}
}

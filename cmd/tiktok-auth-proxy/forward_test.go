package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// tunnelTransport turns the reverse handler's writes into a response read
// as it is written: a 1xx is no answer, the request arrives in the form a
// script sends to listen, and an aborted copy ends the body with an error.
func TestTunnelTransport(t *testing.T) {
	step := make(chan string)
	var got *http.Request
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.WriteHeader(http.StatusContinue)
		w.Header().Set("Content-Length", "10")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, <-step)
		_, _ = io.WriteString(w, <-step)
		panic(http.ErrAbortHandler)
	})
	req := httptest.NewRequest(http.MethodGet, "https://business-api.tiktok.com/open_api/v1.3/x/?a=1", nil)
	req.Header.Set("Proxy-Authorization", "Bearer inner")
	resp, err := tunnelTransport{handle: h, auth: "Bearer outer"}.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusAccepted || resp.ContentLength != 10 {
		t.Fatalf("status %d, length %d; want 202 (not the 100) with length 10", resp.StatusCode, resp.ContentLength)
	}
	if got.URL.String() != "/open_api/v1.3/x/?a=1" || got.Host != "localhost" || got.Header.Get("Proxy-Authorization") != "Bearer outer" {
		t.Errorf("handler got URL %q, Host %q, Proxy-Authorization %q", got.URL, got.Host, got.Header.Get("Proxy-Authorization"))
	}
	for _, chunk := range []string{"first", "secnd"} {
		step <- chunk
		buf := make([]byte, len(chunk))
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != chunk {
			t.Fatalf("read %q, %v; want %q before the next is written", buf, err, chunk)
		}
	}
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil || err == io.EOF {
		t.Errorf("after an aborted copy: %v, want an error", err)
	}
}

package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestMultipartStreams sends an upload much larger than max_inspect_bytes
// whose advertiser_id comes first. The upstream must receive the start of
// the body before the client has written the rest: a proxy that held the
// upload in memory would wait for the end, and the handshake would fail.
func TestMultipartStreams(t *testing.T) {
	h := newHarness(t, nil, nil)
	prefix := "--B\r\nContent-Disposition: form-data; name=\"advertiser_id\"\r\n\r\n" + advOther + "\r\n" +
		"--B\r\nContent-Disposition: form-data; name=\"image_file\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n" +
		strings.Repeat("a", 200)
	rest := strings.Repeat("b", 64*int(h.p.maxInspect)) + "\r\n--B--\r\n"
	want := sha256.Sum256([]byte(prefix + rest))

	gotPrefix := make(chan struct{})
	type result struct {
		sum   [32]byte
		token string
	}
	results := make(chan result, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hash := sha256.New()
		if _, err := io.CopyN(hash, r.Body, int64(len(prefix))); err != nil {
			t.Errorf("upstream reading prefix: %v", err)
			return
		}
		close(gotPrefix)
		if _, err := io.Copy(hash, r.Body); err != nil {
			t.Errorf("upstream reading rest: %v", err)
		}
		var sum [32]byte
		copy(sum[:], hash.Sum(nil))
		results <- result{sum, r.Header.Get("Access-Token")}
		writeEnvelope(w, 0)
	}))
	defer up.Close()
	h.p.target, _ = url.Parse(up.URL)
	srv := httptest.NewServer(h.p)
	defer srv.Close()

	pr, pw := io.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/open_api/v1.3/file/image/ad/upload/", pr)
	req.Header.Set("Content-Type", "multipart/form-data; boundary=B")
	respc := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("client: %v", err)
			respc <- nil
			return
		}
		respc <- resp
	}()
	if _, err := io.WriteString(pw, prefix); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gotPrefix:
	case <-time.After(10 * time.Second):
		t.Fatal("upstream did not receive the start of the upload before its end was sent: the proxy buffers uploads")
	}
	if _, err := io.Copy(pw, strings.NewReader(rest)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	resp := <-respc
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	res := <-results
	if res.sum != want {
		t.Errorf("upload changed on the way")
	}
	if res.token != "tok-other" || resp.Header.Get(HeaderCredential) != "other" {
		t.Errorf("token %q credential %q, want other's", res.token, resp.Header.Get(HeaderCredential))
	}
}

// TestJSONBodyChunked covers a JSON body of unknown length: it is read up
// to the limit, forwarded byte-for-byte, and can be replayed.
func TestJSONBodyChunked(t *testing.T) {
	h := newHarness(t, nil, nil)
	body := `{"advertiser_id": ` + advOther + ` , "x": [1, 2.50, "é"]}`
	r := httptest.NewRequest(http.MethodPost, "/open_api/v1.3/campaign/create/", io.MultiReader(strings.NewReader(body)))
	r.ContentLength = -1
	r.Header.Set("Content-Type", "application/json")
	if w := h.do(r); w.Code != 200 || w.Header().Get(HeaderCredential) != "other" {
		t.Fatalf("status %d credential %q", w.Code, w.Header().Get(HeaderCredential))
	}
	if got := h.up.requests()[0].Body; !bytes.Equal(got, []byte(body)) {
		t.Errorf("body = %q, want %q", got, body)
	}
}

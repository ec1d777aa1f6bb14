package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The fake TikTok the upstream role serves: its API answers, tokens and
// advertiser.
const (
	advertiserID = "7012345678901234567"
	appID        = "7100000000000000001"
	// getPath and postPath are the endpoints the load shapes call; every
	// path without a role of its own answers apiBody.
	getPath  = "/open_api/v1.3/campaign/get/"
	postPath = "/open_api/v1.3/campaign/create/"
	// streamPath answers ?bytes=N with N bytes of application/octet-stream.
	streamPath  = "/open_api/v1.3/file/video/download/"
	refreshPath = "/open_api/v1.3/oauth2/refresh_token/"
	listPath    = "/open_api/v1.3/oauth2/advertiser/get/"
	// statsPath and gatePath are the bench's control endpoints.
	statsPath = "/bench/stats"
	gatePath  = "/bench/gate"

	// longLivedToken is the seeded token of the load and idle proxies;
	// staleToken the expired one of the stampede, freshToken its refresh.
	longLivedToken = "bench-long-lived-token"
	staleToken     = "bench-stale-token"
	freshToken     = "bench-fresh-token"
)

// apiBody is what every API endpoint answers: a small TikTok envelope like a
// campaign listing.
var apiBody = []byte(`{"code":0,"message":"OK","request_id":"20261124000000","data":{"list":[{"campaign_id":"1800000000000000001","campaign_name":"bench"}],"page_info":{"page":1,"total_number":1}}}`)

// upstreamStats is what GET /bench/stats reports.
type upstreamStats struct {
	// Refreshes counts calls to the refresh endpoint.
	Refreshes int64 `json:"refreshes"`
	// Stale counts API calls carrying the expired stampede token.
	Stale int64 `json:"stale"`
	// NoToken counts API calls without an Access-Token.
	NoToken int64 `json:"no_token"`
}

// upstream is the fast fake TikTok: an API endpoint answering a fixed
// envelope, a streaming endpoint, the refresh endpoint (held while the gate
// is closed, so a stampede piles up behind one refresh) and the advertiser
// listing.
type upstream struct {
	stats    upstreamStats
	gateMu   sync.Mutex
	gate     chan struct{} // closed: refreshes answer
	gateOpen bool
}

func newUpstream() *upstream {
	u := &upstream{gate: make(chan struct{})}
	// Open until the bench closes it for a stampede.
	close(u.gate)
	u.gateOpen = true
	return u
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case streamPath:
		u.stream(w, r)
	case refreshPath:
		u.refresh(w, r)
	case listPath:
		writeJSON(w, `{"code":0,"message":"OK","request_id":"1","data":{"list":[{"advertiser_id":"`+advertiserID+`","advertiser_name":"bench"}]}}`)
	case statsPath:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(upstreamStats{
			Refreshes: atomic.LoadInt64(&u.stats.Refreshes),
			Stale:     atomic.LoadInt64(&u.stats.Stale),
			NoToken:   atomic.LoadInt64(&u.stats.NoToken),
		})
	case gatePath:
		u.setGate(r.URL.Query().Get("open") == "1")
	default:
		u.api(w, r)
	}
}

func (u *upstream) api(w http.ResponseWriter, r *http.Request) {
	// A POST's body is read as TikTok would.
	_, _ = io.Copy(io.Discard, r.Body)
	switch r.Header.Get("Access-Token") {
	case "":
		atomic.AddInt64(&u.stats.NoToken, 1)
		writeJSON(w, `{"code":40104,"message":"Access token is null","request_id":"1","data":{}}`)
		return
	case staleToken:
		atomic.AddInt64(&u.stats.Stale, 1)
		writeJSON(w, `{"code":40105,"message":"Access token has expired","request_id":"1","data":{}}`)
		return
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(apiBody))}
	_, _ = w.Write(apiBody)
}

// streamChunk is what the streaming endpoint repeats.
var streamChunk = make([]byte, 64<<10)

func (u *upstream) stream(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
	if err != nil || n < 0 {
		http.Error(w, "bytes: want a count", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	for n > 0 {
		k := min(n, int64(len(streamChunk)))
		if _, err := w.Write(streamChunk[:k]); err != nil {
			return
		}
		n -= k
	}
}

func (u *upstream) refresh(w http.ResponseWriter, r *http.Request) {
	atomic.AddInt64(&u.stats.Refreshes, 1)
	_, _ = io.Copy(io.Discard, r.Body)
	u.gateMu.Lock()
	gate := u.gate
	u.gateMu.Unlock()
	select {
	case <-gate:
	case <-r.Context().Done():
		return
	case <-time.After(time.Minute):
		// A bench that never opens the gate must not hold the proxy forever.
	}
	writeJSON(w, fmt.Sprintf(`{"code":0,"message":"OK","request_id":"1","data":{"access_token":%q,"expires_in":86400,"refresh_token":"bench-refresh-2","refresh_token_expires_in":31536000,"advertiser_ids":[%q],"scope":[1]}}`,
		freshToken, advertiserID))
}

// setGate opens or closes the gate refreshes wait behind.
func (u *upstream) setGate(open bool) {
	u.gateMu.Lock()
	defer u.gateMu.Unlock()
	if open == u.gateOpen {
		return
	}
	u.gateOpen = open
	if open {
		close(u.gate)
	} else {
		u.gate = make(chan struct{})
	}
}

func writeJSON(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, body)
}

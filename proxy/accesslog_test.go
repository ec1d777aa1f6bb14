package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// tiktokAnswer is TikTok's answer with its log id header and the envelope's
// request_id, both distinct so each is seen to come from its own place.
func tiktokAnswer(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tt-Logid", "logid-"+itoa(code))
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"code":%d,"message":"m","request_id":"rid-%d","data":{}}`, code, code)
	}
}

// The access log line carries what the request was routed by and what
// TikTok support asks for; an attribute whose value is unknown is left out
// rather than logged empty or as "none".
func TestAccessLogLine(t *testing.T) {
	const advUnknown = "7000000000000000009"
	manyMain := []string{}
	for i := range 7 {
		adv := fmt.Sprintf("10000000000000000%02d", i)
		manyMain = append(manyMain, adv)
	}
	withClients := func(c *config.Config, _ *Options) {
		c.Clients = []config.Client{{Name: "reports-cron", Token: "client-secret-3", Credentials: []string{"main", "other"}}}
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		edit    func(*config.Config, *Options)
		target  string
		header  map[string]string
		want    map[string]any
		absent  []string
	}{
		{
			name: "advertiser, client, TikTok's ids", handler: tiktokAnswer(0), edit: withClients,
			target: campaignGet + "?advertiser_id=" + advOther,
			header: map[string]string{"Proxy-Authorization": "Bearer client-secret-3"},
			want: map[string]any{"level": "INFO", "credential": "other", "client": "reports-cron", "selected_by": "advertiser",
				"advertiser_ids": []any{advOther}, "tt_logid": "logid-0", "upstream_request_id": "rid-0", "tiktok_code": 0.0,
				"method": "GET", "path": campaignGet, "status": 200.0},
			absent: []string{"advertiser_ids_more", "proxy_error", "retried"},
		},
		{
			name: "header: no advertisers, no client, TikTok sent no ids",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"code":0,"message":"OK","data":{}}`)
			},
			target: campaignGet + "?advertiser_id=" + advMain, header: map[string]string{"X-TikTok-Credential": "other"},
			want:   map[string]any{"credential": "other", "selected_by": "header", "tiktok_code": 0.0},
			absent: []string{"client", "advertiser_ids", "tt_logid", "upstream_request_id"},
		},
		{
			name: "default: an unknown advertiser picks nothing", handler: tiktokAnswer(0),
			target: campaignGet + "?advertiser_id=" + advUnknown,
			want:   map[string]any{"credential": "main", "selected_by": "default"},
			absent: []string{"advertiser_ids", "advertiser_ids_more"},
		},
		{
			name: "only the advertisers that picked it, at most 5", handler: tiktokAnswer(0),
			target: campaignGet + "?advertiser_ids=" + `["` + advUnknown + `","` + strings.Join(manyMain, `","`) + `"]`,
			want: map[string]any{"credential": "main", "selected_by": "advertiser",
				"advertiser_ids": []any{manyMain[0], manyMain[1], manyMain[2], manyMain[3], manyMain[4]}, "advertiser_ids_more": 2.0},
		},
		{
			name: "a failing TikTok code is a warning", handler: tiktokAnswer(40100),
			target: campaignGet,
			want:   map[string]any{"level": "WARN", "tiktok_code": 40100.0, "tt_logid": "logid-40100", "upstream_request_id": "rid-40100"},
		},
		{
			name: "partial success is not", handler: tiktokAnswer(20001),
			target: campaignGet,
			want:   map[string]any{"level": "INFO", "tiktok_code": 20001.0},
		},
		{
			name: "a client's request refused before routing", edit: withClients, target: "/nope",
			header: map[string]string{"Proxy-Authorization": "Bearer client-secret-3"},
			want:   map[string]any{"client": "reports-cron", "status": 404.0, "proxy_error": 90009.0},
			absent: []string{"credential", "selected_by"},
		},
		{
			name: "a client that failed authentication is not named", edit: withClients, target: campaignGet,
			header: map[string]string{"Proxy-Authorization": "Bearer wrong-client-secret"},
			want:   map[string]any{"status": 401.0, "proxy_error": 90010.0},
			absent: []string{"client", "credential", "selected_by"},
		},
		{
			name: "refused before routing", target: "/nope",
			want:   map[string]any{"level": "INFO", "status": 404.0, "proxy_error": 90009.0, "path": "/nope"},
			absent: []string{"credential", "selected_by", "client", "tiktok_code", "tt_logid", "upstream_request_id", "advertiser_ids"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.handler, tt.edit)
			for _, id := range manyMain {
				h.tok.advertisers[id] = "main"
			}
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			w := h.do(r)
			lines := h.logLines(t, "request")
			if len(lines) != 1 {
				t.Fatalf("%d request lines: %s", len(lines), h.logs)
			}
			line := lines[0]
			if line["request_id"] != w.Header().Get(HeaderRequestID) || line["request_id"] == "" {
				t.Errorf("request_id %v, want the proxy's own %q", line["request_id"], w.Header().Get(HeaderRequestID))
			}
			if _, ok := line["duration"].(float64); !ok {
				t.Errorf("duration %#v, want a number", line["duration"])
			}
			for k, v := range tt.want {
				if got, _ := json.Marshal(line[k]); string(got) != mustJSON(t, v) {
					t.Errorf("%s = %s, want %s", k, got, mustJSON(t, v))
				}
			}
			for _, k := range tt.absent {
				if v, ok := line[k]; ok {
					t.Errorf("%s = %#v, want it left out", k, v)
				}
			}
			for k, v := range line {
				if v == "" || v == "none" || v == nil {
					t.Errorf("empty attribute %s=%#v", k, v)
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// accessLogExchange is a settled exchange with every attribute of the
// access log known but the advertisers, logged by a JSON logger to
// io.Discard at level.
func accessLogExchange(t testing.TB, level slog.Leveler) (*Core, *exchange) {
	t.Helper()
	c, err := NewCore(Options{Config: testConfig("http://tiktok.test"), Tokens: newFakeTokens(),
		Logger: slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: level}))})
	if err != nil {
		t.Fatal(err)
	}
	ex := c.newExchange(localRequest(http.MethodGet, campaignGet, nil), time.Time{})
	ex.client, ex.route = "ops", &Route{Credential: "main", Client: "ops", sel: &selection{by: selectedByHeader}}
	ex.code, ex.codeOK, ex.logID, ex.upstreamID, ex.proxyErr, ex.retried = 0, true, "logid", "rid", 90007, true
	return c, ex
}

// A line the logger would drop is not built at all (issue 14).
func TestAccessLogDroppedCostsNothing(t *testing.T) {
	c, ex := accessLogExchange(t, slog.LevelError)
	if n := testing.AllocsPerRun(100, func() { c.logRequest(ex, 200, time.Millisecond, 10) }); n != 0 {
		t.Errorf("a dropped access log line costs %v allocations, want 0", n)
	}
}

// BenchmarkAccessLog is the cost of one access log line of 14 attributes:
// they are handed over in an array, not boxed one by one, so what
// allocations remain are slog's own (the record's attributes past its
// first five).
func BenchmarkAccessLog(b *testing.B) {
	c, ex := accessLogExchange(b, slog.LevelInfo)
	b.ReportAllocs()
	for b.Loop() {
		c.logRequest(ex, 200, time.Millisecond, 10)
	}
}

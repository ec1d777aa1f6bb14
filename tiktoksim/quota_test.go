package tiktoksim_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktoksim"
)

// fixed is a simulator clock that moves only with Advance: 12:00:00.5 UTC.
func fixed() time.Time { return time.Date(2026, 12, 2, 12, 0, 0, 500_000_000, time.UTC) }

func TestQuotasAnswerLikeTikTok(t *testing.T) {
	for _, tc := range []struct {
		name    string
		quota   string
		path    string
		code    int
		word    string        // the window named in the message
		next    time.Duration // advancing this much opens a new window
		notNext time.Duration // advancing this much does not
	}{
		{"app per second", `{"limit": 2}`, "campaign/get/?advertiser_id=" + adv1, 40100, "per second", 500 * time.Millisecond, 499 * time.Millisecond},
		{"app per minute", `{"scope": "app", "limit": 2, "window": "minute"}`, "campaign/get/?advertiser_id=" + adv1, 40100, "per minute", time.Minute, 59 * time.Second},
		{"app per day", `{"app_id": "app-1", "limit": 2, "window": "day"}`, "campaign/get/?advertiser_id=" + adv1, 40100, "per day", 12 * time.Hour, 11 * time.Hour},
		{"endpoint", `{"scope": "endpoint", "path": "/open_api/v1.3/campaign/get/", "limit": 2}`, "campaign/get/?advertiser_id=" + adv1, 40016, "per second", time.Second, 0},
		{"advertiser", `{"scope": "advertiser", "limit": 2}`, "campaign/get/?advertiser_id=" + adv1, 40133, "per second", time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tiktoksim.Options{Now: fixed, AccessTTL: tiktoksim.NoExpiry})
			g := e.grant(t, nil)
			e.control(t, "POST", "/sim/quota", tc.quota, 200, nil)
			for i := range 2 {
				if _, en := e.do(t, "GET", api+tc.path, g.AccessToken, nil, ""); en.Code != 0 {
					t.Fatalf("call %d within the limit: code %d %s", i+1, en.Code, en.Message)
				}
			}
			_, en := e.do(t, "GET", api+tc.path, g.AccessToken, nil, "")
			if en.Code != tc.code || !strings.Contains(en.Message, tc.word) {
				t.Fatalf("third call: code %d %q, want %d naming %q", en.Code, en.Message, tc.code, tc.word)
			}
			if rec, _ := lastRecorded(e, api+strings.Split(tc.path, "?")[0]); rec.Fault != "quota" || rec.Code != tc.code {
				t.Errorf("recorded %+v, want fault quota and code %d", rec, tc.code)
			}
			if tc.notNext > 0 {
				e.sim.Advance(tc.notNext)
				if _, en := e.do(t, "GET", api+tc.path, g.AccessToken, nil, ""); en.Code != tc.code {
					t.Fatalf("same window, later: code %d, want %d", en.Code, tc.code)
				}
				e.sim.Advance(tc.next - tc.notNext)
			} else {
				e.sim.Advance(tc.next)
			}
			if _, en := e.do(t, "GET", api+tc.path, g.AccessToken, nil, ""); en.Code != 0 {
				t.Fatalf("next window: code %d %s, want 0", en.Code, en.Message)
			}
		})
	}
}

func TestQuotaScopesCountApart(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{Now: fixed, AccessTTL: tiktoksim.NoExpiry})
	g := e.grant(t, nil)
	e.control(t, "POST", "/sim/quota", `{"scope": "endpoint", "limit": 2}`, 200, nil)
	e.control(t, "POST", "/sim/quota", `{"scope": "advertiser", "limit": 1}`, 200, nil)
	get := func(path string) int {
		_, en := e.do(t, "GET", api+path, g.AccessToken, nil, "")
		return en.Code
	}
	for _, step := range []struct {
		path string
		want int
		why  string
	}{
		{"campaign/get/?advertiser_id=" + adv1, 0, "first call"},
		{"campaign/get/?advertiser_id=" + adv2, 0, "another advertiser is counted apart"},
		{"ad/get/?advertiser_id=" + adv1, 40133, "the first advertiser's second call, on another endpoint"},
		{"campaign/get/", 40016, "the endpoint's third call"},
		{"ad/get/", 0, "another endpoint is counted apart"},
	} {
		if c := get(step.path); c != step.want {
			t.Fatalf("%s: code %d, want %d", step.why, c, step.want)
		}
	}
	var quotas struct{ Quotas []tiktoksim.Quota }
	e.control(t, "DELETE", "/sim/quota", "", 200, nil)
	e.control(t, "GET", "/sim/quota", "", 200, &quotas)
	if len(quotas.Quotas) != 0 || get("campaign/get/?advertiser_id="+adv1) != 0 {
		t.Errorf("after DELETE: quotas %v", quotas.Quotas)
	}
	for _, bad := range []string{`{"limit": 0}`, `{"limit": 1, "window": "hour"}`, `{"limit": 1, "scope": "bc"}`, `{"limit": 1, "colour": "red"}`} {
		e.control(t, "POST", "/sim/quota", bad, 400, nil)
	}
}

func TestPerSecondCounter(t *testing.T) {
	e := newEnv(t, tiktoksim.Options{Now: fixed, AccessTTL: tiktoksim.NoExpiry})
	g := e.grant(t, nil)
	e.control(t, "POST", "/sim/quota", `{"limit": 2}`, 200, nil)
	for range 3 {
		e.do(t, "GET", api+"campaign/get/?advertiser_id="+adv1, g.AccessToken, nil, "")
	}
	e.sim.Advance(time.Second)
	e.do(t, "GET", api+"campaign/get/?advertiser_id="+adv1, g.AccessToken, nil, "")
	// Neither a call without a known token nor a token endpoint counts.
	e.do(t, "GET", api+"campaign/get/?advertiser_id="+adv1, "unknown", nil, "")
	e.grant(t, nil)

	var got struct {
		AppID   string             `json:"app_id"`
		Seconds []tiktoksim.Second `json:"seconds"`
	}
	e.control(t, "GET", "/sim/persecond?app_id="+appID, "", 200, &got)
	start := fixed().Unix()
	want := fmt.Sprint([]tiktoksim.Second{{Unix: start, Calls: 3}, {Unix: start + 1, Calls: 1}})
	if fmt.Sprint(got.Seconds) != want {
		t.Errorf("per second = %v, want %v (refused calls count: TikTok received them)", got.Seconds, want)
	}
	e.control(t, "DELETE", "/sim/persecond", "", 200, nil)
	if s := e.sim.PerSecond(appID); len(s) != 0 {
		t.Errorf("after DELETE: %v", s)
	}
	e.control(t, "GET", "/sim/persecond", "", 400, nil)
}

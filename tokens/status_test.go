package tokens_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// A status says when TikTok rejected the access token itself, so nothing
// shows that token as usable until its stored expiry; the flag reaches
// /api/credentials (and status --json) only when set.
func TestStatusFromRecordAccessRejected(t *testing.T) {
	rec := &tokens.Record{Credential: "main", AccessToken: "SECRET-A", RefreshToken: "SECRET-R",
		AccessExpiresAt: t0.Add(29 * time.Minute), ReauthRequired: true, ReauthReason: "TikTok rejected the access token",
		AccessRejected: true}
	st := tokens.StatusFromRecord("main", "", rec)
	if !st.AccessRejected {
		t.Fatal("StatusFromRecord of a rejected token: AccessRejected false")
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"access_rejected":true`) {
		t.Errorf("JSON lacks access_rejected: %s", b)
	}
	var table strings.Builder
	if err := tokens.FormatStatusTable(&table, []tokens.Status{st}, t0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "rejected by TikTok") || strings.Contains(table.String(), "29m") {
		t.Errorf("status table shows a rejected token by its expiry:\n%s", table.String())
	}
	rec.AccessRejected = false
	st = tokens.StatusFromRecord("main", "", rec)
	if b, _ := json.Marshal(st); st.AccessRejected || strings.Contains(string(b), "access_rejected") {
		t.Errorf("a token not rejected shows access_rejected: %+v %s", st, b)
	}
}

// HumanDuration is the one human form of a duration (status table,
// status's messages and its --warn-before default): two units, rounded to
// the second, which is left out when zero.
func TestHumanDuration(t *testing.T) {
	const day = 24 * time.Hour
	for d, want := range map[time.Duration]string{
		0:                                     "0s",
		400 * time.Millisecond:                "0s",
		42 * time.Second:                      "42s",
		59*time.Second + 600*time.Millisecond: "1m",
		5*time.Minute + 7*time.Second:         "5m7s",
		59*time.Minute + 59*time.Second + 600*time.Millisecond: "1h",
		5*time.Hour + 12*time.Minute + 40*time.Second:          "5h13m",
		23*time.Hour + 59*time.Minute + 40*time.Second:         "1d",
		3*day + 4*time.Hour:             "3d4h",
		5*day - 10*time.Millisecond:     "5d",
		14 * day:                        "14d",
		300 * day:                       "300d",
		-(2*time.Hour + 30*time.Second): "2h1m",
	} {
		if got := tokens.HumanDuration(d); got != want {
			t.Errorf("HumanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

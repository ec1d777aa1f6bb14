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

package tokens_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

// gaugeValue reads the credential's series of the gauge family name (without
// the tiktok_auth_proxy_ prefix) as the registry exports it; ok is false when
// there is none.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) (v float64, ok bool) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "tiktok_auth_proxy_"+name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "credential" && l.GetValue() == credName {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// TestExpiryGaugesFollowRefresh: both expiry gauges show the stored
// token's expiry and move with every refresh.
func TestExpiryGaugesFollowRefresh(t *testing.T) {
	e := newEnv(t)
	e.authorize()
	check := func(when string) {
		t.Helper()
		rec := e.record()
		for name, want := range map[string]time.Time{
			"access_token_expiry_timestamp_seconds":  rec.AccessExpiresAt,
			"refresh_token_expiry_timestamp_seconds": rec.RefreshExpiresAt,
		} {
			if got, ok := gaugeValue(t, e.reg, name); !ok || got != unixSeconds(want) {
				t.Errorf("%s: %s = %v (present %v), want %v", when, name, got, ok, unixSeconds(want))
			}
		}
	}
	check("after authorization")
	first := e.record()
	for i := 1; i <= 3; i++ {
		e.clock.Set(e.record().AccessExpiresAt)
		e.mustToken()
		if e.record().AccessExpiresAt.Equal(first.AccessExpiresAt) || e.record().RefreshExpiresAt.Equal(first.RefreshExpiresAt) {
			t.Fatal("the refresh did not move the expiries; the test proves nothing")
		}
		check("after refresh")
	}
}

// TestExpiryGaugesAbsent: no access expiry gauge for a long-lived grant, no
// refresh expiry gauge when TikTok gives none, and a gauge disappears when a
// re-authorization replaces the grant with one that lacks it.
func TestExpiryGaugesAbsent(t *testing.T) {
	const access, refresh = "access_token_expiry_timestamp_seconds", "refresh_token_expiry_timestamp_seconds"
	longLived := &tiktok.Grant{AccessToken: "long-lived", AdvertiserIDs: []string{"7000000000000000001"}}
	noRefreshExpiry := &tiktok.Grant{AccessToken: "a", ExpiresIn: 24 * time.Hour, RefreshToken: "r"}
	for _, tc := range []struct {
		name                    string
		before                  bool // authorized with an expiring grant first
		grant                   *tiktok.Grant
		wantAccess, wantRefresh bool
	}{
		{name: "long-lived", grant: longLived},
		{name: "long-lived replaces an expiring grant", before: true, grant: longLived},
		{name: "no refresh expiry given", grant: noRefreshExpiry, wantAccess: true},
		{name: "no refresh expiry replaces one", before: true, grant: noRefreshExpiry, wantAccess: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.before {
				e.authorize()
				if _, ok := gaugeValue(t, e.reg, refresh); !ok {
					t.Fatal("the first grant shows no refresh expiry; the test proves nothing")
				}
			}
			if _, err := e.m.Authorize(context.Background(), credName, tc.grant); err != nil {
				t.Fatal(err)
			}
			if _, ok := gaugeValue(t, e.reg, access); ok != tc.wantAccess {
				t.Errorf("%s present %v, want %v", access, ok, tc.wantAccess)
			}
			if _, ok := gaugeValue(t, e.reg, refresh); ok != tc.wantRefresh {
				t.Errorf("%s present %v, want %v", refresh, ok, tc.wantRefresh)
			}
			if v, ok := gaugeValue(t, e.reg, "credential_authorized"); !ok || v != 1 {
				t.Errorf("credential_authorized = %v (present %v), want 1", v, ok)
			}
		})
	}
}

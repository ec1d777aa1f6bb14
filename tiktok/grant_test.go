package tiktok_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

// TestOddGrantFields: an answer that carries an access token (and, after a
// refresh, the rotated refresh token) is kept whatever shape its other
// fields have; each unusable field is left out and named in Dropped, never
// with a token in the text (issue 9 finding 5).
func TestOddGrantFields(t *testing.T) {
	const tokens = `"access_token":"at-secret","refresh_token":"rt-secret"`
	tests := []struct {
		name string
		data string // fields besides the tokens
		want tiktok.Grant
	}{
		{"expires_in as a float", `"expires_in":28800.0,"refresh_token_expires_in":31536000.0`,
			tiktok.Grant{ExpiresIn: 8 * time.Hour, RefreshExpiresIn: 8760 * time.Hour}},
		{"expires_in with exponent", `"expires_in":2.88e4`, tiktok.Grant{ExpiresIn: 8 * time.Hour}},
		{"expires_in as a float string", `"expires_in":"28800.0"`, tiktok.Grant{ExpiresIn: 8 * time.Hour}},
		{"expires_in a fraction", `"expires_in":1.5`,
			tiktok.Grant{Dropped: []string{`expires_in: "1.5" is not a whole number of seconds`}}},
		{"expires_in an object", `"expires_in":{"s":5},"refresh_token_expires_in":86400`,
			tiktok.Grant{RefreshExpiresIn: 24 * time.Hour, Dropped: []string{"expires_in: want a number of seconds, got an object"}}},
		{"expires_in words", `"expires_in":"eight hours"`,
			tiktok.Grant{Dropped: []string{`expires_in: "eight hours" is not a number of seconds`}}},
		{"expires_in hex", `"expires_in":"0x10"`,
			tiktok.Grant{Dropped: []string{`expires_in: "0x10" is not a number of seconds`}}},
		{"expires_in NaN", `"expires_in":"NaN"`,
			tiktok.Grant{Dropped: []string{`expires_in: "NaN" is not a number of seconds`}}},
		{"expires_in huge", `"expires_in":1e400`,
			tiktok.Grant{Dropped: []string{`expires_in: "1e400" seconds is out of range`}}},
		{"refresh expiry a boolean", `"expires_in":86400,"refresh_token_expires_in":true`,
			tiktok.Grant{ExpiresIn: 24 * time.Hour, Dropped: []string{"refresh_token_expires_in: want a number of seconds, got a boolean"}}},
		{"open_id as a number", `"open_id":7012345678901234567890`, tiktok.Grant{OpenID: "7012345678901234567890"}},
		{"open_id a float", `"open_id":1.5`,
			tiktok.Grant{Dropped: []string{"open_id: want a string or a whole number, got a number"}}},
		{"open_id an object", `"open_id":{"id":"o"}`,
			tiktok.Grant{Dropped: []string{"open_id: want a string or a whole number, got an object"}}},
		{"advertiser_ids as a string", `"advertiser_ids":"7012345678901234567"`,
			tiktok.Grant{Dropped: []string{"advertiser_ids: want a list, got a string; left out"}}},
		{"advertiser_ids an object", `"advertiser_ids":{"a":1}`,
			tiktok.Grant{Dropped: []string{"advertiser_ids: want a list, got an object; left out"}}},
		{"advertiser_ids mixed", `"advertiser_ids":["7012345678901234567",[1],true,null,7012345678901234568]`,
			tiktok.Grant{AdvertiserIDs: []string{"7012345678901234567", "7012345678901234568"},
				Dropped: []string{"advertiser_ids: a list is not an advertiser id", "advertiser_ids: a boolean is not an advertiser id"}}},
		{"scope a number", `"scope":4`, tiktok.Grant{Dropped: []string{"scope: want a list or a comma-separated string"}}},
		{"scope list of objects", `"scope":[{"id":4}]`, tiktok.Grant{Dropped: []string{"scope: want a list or a comma-separated string"}}},
		{"everything odd at once", `"expires_in":28800.5,"open_id":[],"advertiser_ids":"x","scope":true,"token_type":5`,
			tiktok.Grant{Dropped: []string{`expires_in: "28800.5" is not a whole number of seconds`, "advertiser_ids: want a list, got a string; left out",
				"scope: want a list or a comma-separated string", "open_id: want a string or a whole number, got a list"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, _ := fake(t, http.StatusOK, `{"code":0,"message":"OK","request_id":"r","data":{`+tokens+`,`+tt.data+`}}`)
			app := tiktok.App{AppID: appID, Secret: secret, Endpoints: tiktok.Endpoints{RefreshURL: ts.URL + "/refresh/"}}
			g, err := (&tiktok.Client{}).Refresh(context.Background(), app, "old-rt")
			if err != nil {
				t.Fatalf("Refresh: %v; the rotated refresh token would be lost", err)
			}
			want := tt.want
			want.AccessToken, want.RefreshToken = "at-secret", "rt-secret"
			if !reflect.DeepEqual(*g, want) {
				t.Errorf("grant = %+v\nwant    %+v", *g, want)
			}
		})
	}
}

// TestOddTokenShapes: a token of an odd shape is not usable; an odd refresh
// token is dropped (the old one is kept by the caller) and its value never
// shows in Dropped.
func TestOddTokenShapes(t *testing.T) {
	ts, _ := fake(t, http.StatusOK, `{"code":0,"data":{"access_token":"at","refresh_token":{"v":"rt-secret"},"expires_in":60}}`)
	app := tiktok.App{AppID: appID, Secret: secret, Endpoints: tiktok.Endpoints{RefreshURL: ts.URL + "/refresh/"}}
	g, err := (&tiktok.Client{}).Refresh(context.Background(), app, "old-rt")
	if err != nil {
		t.Fatal(err)
	}
	want := tiktok.Grant{AccessToken: "at", ExpiresIn: time.Minute, Dropped: []string{"refresh_token: want a string, got an object; left out"}}
	if !reflect.DeepEqual(*g, want) {
		t.Errorf("grant = %+v, want %+v", *g, want)
	}
	if strings.Contains(strings.Join(g.Dropped, " "), "rt-secret") {
		t.Errorf("Dropped shows the token: %q", g.Dropped)
	}
}

// answer is a transport that answers every request with one body.
type answer []byte

func (a answer) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(a)), ContentLength: int64(len(a)), Request: r}, nil
}

// FuzzTokenAnswer feeds arbitrary bodies to Refresh as TikTok's answer. It
// checks that decoding never panics, that a grant it returns is usable (an
// access token, digit-only advertiser ids, no negative lifetime), and
// finding 5's rule: an answer with code 0 whose data has a non-empty
// access_token string is never refused over its other fields.
func FuzzTokenAnswer(f *testing.F) {
	for _, s := range []string{
		`{"code":0,"message":"OK","request_id":"r","data":{"access_token":"at","expires_in":86400,"open_id":"o","refresh_token":"rt","refresh_token_expires_in":31536000,"scope":"user.info.basic","token_type":"Bearer"}}`,
		`{"code":0,"data":{"access_token":"at","advertiser_ids":[7012345678901234567,"7012345678901234568"],"scope":[4,100]}}`,
		`{"code":0,"data":{"access_token":"at","refresh_token":"rt","expires_in":28800.0,"open_id":5,"advertiser_ids":"7012345678901234567"}}`,
		`{"code":0,"data":{"access_token":"at","expires_in":"1e400","refresh_token_expires_in":-5,"scope":{}}}`,
		`{"code":40107,"message":"invalid refresh token","data":{}}`,
		`{"code":0,"data":{"access_token":"","refresh_token":"rt"}}`,
		`{"code":0,"data":null}`,
		`{"code":"0","data":{"access_token":"at"}}`,
		`{"code":-0,"data":{"access_token":"at"}} trailing`,
		`{"code":0,"data":{"access_tok`,
		`<html>login</html>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		app := tiktok.App{AppID: appID, Secret: secret, Endpoints: tiktok.Endpoints{RefreshURL: "http://tiktok.test/refresh/"}}
		g, err := (&tiktok.Client{HTTP: &http.Client{Transport: answer(body)}}).Refresh(context.Background(), app, "old-rt")
		if err == nil {
			if g.AccessToken == "" || g.ExpiresIn < 0 || g.RefreshExpiresIn < 0 {
				t.Fatalf("unusable grant %+v", g)
			}
			for _, id := range g.AdvertiserIDs {
				if id == "" || strings.Trim(id, "0123456789") != "" {
					t.Fatalf("advertiser id %q is not digits", id)
				}
			}
			return
		}
		if carriesAccessToken(body) {
			t.Fatalf("an answer with an access token was refused: %v", err)
		}
	})
}

// carriesAccessToken says, by plain decoding, whether body is a success
// envelope whose data holds a non-empty access_token string.
func carriesAccessToken(body []byte) bool {
	var env, data map[string]json.RawMessage
	if json.Unmarshal(body, &env) != nil || json.Unmarshal(env["data"], &data) != nil {
		return false
	}
	var code json.Number
	var token string
	// A quoted "0" would decode into a json.Number too; TikTok's code is a number.
	if bytes.HasPrefix(env["code"], []byte(`"`)) || json.Unmarshal(env["code"], &code) != nil || code.String() != "0" && code.String() != "-0" {
		return false
	}
	return json.Unmarshal(data["access_token"], &token) == nil && token != ""
}

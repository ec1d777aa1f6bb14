package tiktok_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

func TestDecodeEnvelope(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		code    int
		data    string
		apiErr  bool
		errText string
	}{
		{"success", `{"code":0,"message":"OK","request_id":"r1","data":{"list":[]}}`, 0, `{"list":[]}`, false, ""},
		{"partial success", `{"code":20001,"message":"partial","request_id":"r2","data":{"failed":[1]}}`, 20001, `{"failed":[1]}`, false, ""},
		{"error", `{"code":40105,"message":"bad token","request_id":"r3","data":{}}`, 40105, `{}`, true, ""},
		{"code last", `{"data":{"code":1},"message":"m","code":40100}`, 40100, `{"code":1}`, true, ""},
		{"message of wrong type", `{"code":0,"message":5,"data":null}`, 0, `null`, false, ""},
		{"no code", `{"message":"m"}`, 0, "", false, `tiktok: decode response: no "code" field`},
		{"Code is not code", `{"Code":0}`, 0, "", false, `tiktok: decode response: no "code" field`},
		{"fraction", `{"code":1.5}`, 0, "", false, `tiktok: decode response: "code" is not an integer`},
		{"garbage", `nope`, 0, "", false, "tiktok: decode response: invalid character"},
		{"truncated", `{"code":0,"data":{"x":`, 0, "", false, "tiktok: decode response: unexpected EOF"},
		{"null", `null`, 0, "", false, "tiktok: decode response: not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := tiktok.DecodeEnvelope(strings.NewReader(tt.in))
			if tt.errText != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.errText) {
					t.Fatalf("err = %v, want prefix %q", err, tt.errText)
				}
				return
			}
			var apiErr *tiktok.APIError
			if isAPI := errors.As(err, &apiErr); isAPI != tt.apiErr || (err != nil && !isAPI) {
				t.Fatalf("err = %v, want APIError %v", err, tt.apiErr)
			}
			if apiErr != nil && (apiErr.Code != tt.code || apiErr.RequestID != env.RequestID) {
				t.Errorf("APIError = %+v", apiErr)
			}
			if env.Code != tt.code || string(env.Data) != tt.data {
				t.Errorf("envelope = %+v %s, want code %d data %s", env, env.Data, tt.code, tt.data)
			}
		})
	}
}

func TestPeekCode(t *testing.T) {
	big := `{"data":{"list":["` + strings.Repeat("x", 5000) + `"]},"code":0}`
	tests := []struct {
		name string
		in   string
		code int
		ok   bool
	}{
		{"code first", `{"code":40100,"message":"too frequent","request_id":"r","data":{}}`, 40100, true},
		{"code after message", `{"message":"OK","request_id":"r","code":0,"data":{}}`, 0, true},
		{"whitespace", " \n{ \"code\" :\t40105 ,\n\"message\":\"x\"}", 40105, true},
		{"nested code skipped", `{"data":{"code":7,"list":[{"code":8}]},"code":50002}`, 50002, true},
		{"code then truncated", `{"code":0,"message":"O`, 0, true},
		{"code closes object", `{"code":20001}`, 20001, true},
		{"negative", `{"code":-1,`, -1, true},
		{"truncated number", `{"message":"x","code":401`, 0, false},
		{"truncated after number with space", `{"code":401 `, 0, false},
		{"truncated key", `{"message":"x","co`, 0, false},
		{"huge data first truncated", big[:4096], 0, false},
		{"huge data first complete", big, 0, true},
		{"no code", `{"message":"x","data":{}}`, 0, false},
		{"string code", `{"code":"0","message":"x"}`, 0, false},
		{"float code", `{"code":1.5,"message":"x"}`, 0, false},
		{"array", `[{"code":0}]`, 0, false},
		{"empty", ``, 0, false},
		{"html", `<html><body>code: 0</body></html>`, 0, false},
		{"escaped key", `{"\u0063ode":40016,"x":1}`, 40016, true},
		{"code in string value", `{"message":"\"code\":5","code":6}`, 6, true},
		{"huge number", `{"code":99999999999999999999999,"x":1}`, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, ok := tiktok.PeekCode([]byte(tt.in))
			if code != tt.code || ok != tt.ok {
				t.Errorf("PeekCode(%.60q) = %d, %v; want %d, %v", tt.in, code, ok, tt.code, tt.ok)
			}
		})
	}
}

var envelopeSeeds = []string{
	`{"code":0,"message":"OK","request_id":"r","data":{"list":[{"advertiser_id":"7012345678901234567"}]}}`,
	`{"message":"m","code":40105}`,
	`{"code":20001,"data":{"code":1}}`,
	`{"data":[[[[{}]]]],"code":50002}`,
	`{"code":1e3}`,
	`{"code":-0}`,
	"\xff{\"code\":0}",
	`{"code":0,"data":{"access_token":"at","advertiser_ids":[9223372036854775807]}}`,
	``,
}

// FuzzDecodeEnvelope checks that DecodeEnvelope never panics and agrees
// with PeekCode on every prefix of a document it accepts.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range envelopeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := tiktok.DecodeEnvelope(bytes.NewReader(data))
		var apiErr *tiktok.APIError
		if err != nil && !errors.As(err, &apiErr) {
			if !strings.HasPrefix(err.Error(), "tiktok: decode response: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		if apiErr != nil && (apiErr.Code == tiktok.CodeOK || apiErr.Code == tiktok.CodePartialSuccess) {
			t.Fatalf("APIError for a success code: %v", apiErr)
		}
		// Duplicate keys make "which code" ambiguous; TikTok never sends them.
		if bytes.Count(data, []byte("code")) != 1 {
			return
		}
		full, ok := tiktok.PeekCode(data)
		if ok && full != env.Code {
			t.Fatalf("PeekCode = %d, DecodeEnvelope = %d", full, env.Code)
		}
	})
}

// FuzzPeekCode checks that a prefix never yields a code the whole
// document does not have.
func FuzzPeekCode(f *testing.F) {
	for _, s := range envelopeSeeds {
		f.Add([]byte(s), 10)
	}
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		full, fullOK := tiktok.PeekCode(data)
		if cut < 0 || cut > len(data) {
			return
		}
		code, ok := tiktok.PeekCode(data[:cut])
		if ok && (!fullOK || code != full) {
			t.Fatalf("PeekCode(prefix %d) = %d, whole = %d, %v", cut, code, full, fullOK)
		}
	})
}

// PeekEnvelope reads TikTok's message and request_id beside the code when
// the prefix holds them whole, without scanning "data" once the code is
// known.
func TestPeekEnvelope(t *testing.T) {
	tests := []struct {
		name, in string
		want     tiktok.EnvelopeHead
	}{
		{"TikTok's order", `{"code":50002,"message":"System error","request_id":"2026120201","data":{}}`,
			tiktok.EnvelopeHead{Code: 50002, CodeOK: true, Message: "System error", RequestID: "2026120201"}},
		{"before the code", `{"request_id":"r1","message":"x","code":40100}`,
			tiktok.EnvelopeHead{Code: 40100, CodeOK: true, Message: "x", RequestID: "r1"}},
		{"after data is not scanned", `{"code":0,"data":{"request_id":"inner"},"request_id":"late"}`,
			tiktok.EnvelopeHead{CodeOK: true}},
		{"nested ones are not it", `{"data":{"request_id":"inner","message":"m"},"code":0}`,
			tiktok.EnvelopeHead{CodeOK: true}},
		{"truncated", `{"code":0,"message":"OK","request_id":"2026`,
			tiktok.EnvelopeHead{CodeOK: true, Message: "OK"}},
		{"not a string", `{"code":0,"request_id":{"code":7},"message":5,"data":{}}`,
			tiktok.EnvelopeHead{CodeOK: true}},
		{"object request_id before code", `{"request_id":{"code":7},"code":3}`,
			tiktok.EnvelopeHead{Code: 3, CodeOK: true}},
		{"no code", `{"request_id":"r","message":"x"}`,
			tiktok.EnvelopeHead{Message: "x", RequestID: "r"}},
		{"truncated code", `{"request_id":"r","code":401`,
			tiktok.EnvelopeHead{RequestID: "r"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tiktok.PeekEnvelope([]byte(tt.in)); got != tt.want {
				t.Errorf("PeekEnvelope(%q) = %+v; want %+v", tt.in, got, tt.want)
			}
		})
	}
}

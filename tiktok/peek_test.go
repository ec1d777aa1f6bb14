package tiktok

import (
	"testing"
)

var peekSeeds = []string{
	`{"code":0,"message":"OK","request_id":"20261124000000","data":{"list":[]}}`,
	`{"code":40100,"message":"Too many requests","request_id":"2026112400","data":{}}`,
	` { "message" : "OK" , "code" : 0 , "request_id" : "x" , "data" : {} } `,
	`{"code":-1,"data":{}}`,
	`{"code":0}`,
	`{"code":0,"data":{}}`,
	`{"data":{},"code":0}`,
	`{"code":1.5,"message":"x"}`,
	`{"code":1e3,"message":"x"}`,
	`{"code":01,"message":"x"}`,
	`{"code":"0","message":"x"}`,
	`{"code":123456789012345678901,"message":"x"}`,
	`{"code":0,"message":"caf\u00e9","request_id":"1"}`,
	`{"code":0,"message":"café","request_id":"1"}`,
	`{"code":0,"message":"","request_id":"1","data":{}}`,
	`{"code":0,"message":1,"request_id":"1"}`,
	`{"code":0,"code":1,"message":"m","request_id":"1"}`,
	`{"other":1,"code":0}`,
	`{"code":0,"message":"a\"b","request_id":"1"}`,
	"{\"code\":0,\"message\":\"\xff\",\"request_id\":\"1\"}",
	`{"request_id":"r","message":"m","code":51000,"data":null}`,
	`[{"code":0}]`,
	`{"code" 0}`,
	`{"code":0 "message":"x"}`,
	``,
}

// Whatever peekFast answers, the decoder answers too, for every prefix of
// every seed.
func TestPeekFastAgrees(t *testing.T) {
	fast := 0
	for _, s := range peekSeeds {
		for cut := 0; cut <= len(s); cut++ {
			p := []byte(s[:cut])
			h, ok := peekFast(p)
			if !ok {
				continue
			}
			fast++
			if want := peekDecoded(p); h != want {
				t.Errorf("%q: peekFast %+v, decoder %+v", p, h, want)
			}
		}
	}
	// TikTok's own envelope, whole, must take the fast path.
	for _, s := range peekSeeds[:3] {
		if _, ok := peekFast([]byte(s)); !ok {
			t.Errorf("%q: not read by peekFast", s)
		}
	}
	if fast == 0 {
		t.Fatal("peekFast answered nothing")
	}
}

// FuzzPeekFast: whenever peekFast answers, its answer is the decoder's.
func FuzzPeekFast(f *testing.F) {
	for _, s := range peekSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if h, ok := peekFast(data); ok {
			if want := peekDecoded(data); h != want {
				t.Fatalf("%q: peekFast %+v, decoder %+v", data, h, want)
			}
		}
	})
}

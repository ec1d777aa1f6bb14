package proxy

import (
	"encoding/json"
	"strings"
	"testing"
)

var validJSONCases = []string{
	``, ` `, `{}`, `[]`, `{"a":1}`, `{"a":1,}`, `[1,]`, `[,1]`, `{"a" 1}`, `{a:1}`, `{"a":1}x`, ` {"a":[1,2,{"b":null}]} `,
	`"x"`, `"\u00e9\"\\\/\b\f\n\r\t"`, `"\u00zz"`, `"\u00e"`, `"\x"`, "\"\x1f\"", "\"\x7f\xff\"", `"abc`, `"\`,
	`0`, `-0`, `-`, `01`, `1.`, `1.5`, `.5`, `1e5`, `1E+5`, `1e-5`, `1e`, `1e+`, `-1.5e-3`, `--1`, `+1`, `1.2.3`,
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `NULL`, `[true,false,null]`, "{\"a\":1}\x00", "\t[1]\r\n",
	`{"a":{"b":{"c":[]}}}`, `{"a"}`, `{"a":}`, `[1 2]`, `{"a":1 "b":2}`, `}`, `]`, `[`, `{`,
	strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth),
	strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1),
	strings.Repeat(`{"a":`, maxJSONDepth) + "1" + strings.Repeat("}", maxJSONDepth),
	strings.Repeat(`{"a":`, maxJSONDepth+1) + "1" + strings.Repeat("}", maxJSONDepth+1),
}

// validJSON accepts exactly what encoding/json.Valid accepts.
func TestValidJSONAsEncodingJSON(t *testing.T) {
	for _, c := range validJSONCases {
		if got, want := validJSON([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("validJSON(%.60q) = %v, json.Valid says %v", c, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, c := range validJSONCases {
		if len(c) < 200 {
			f.Add([]byte(c))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	body := []byte(`{"advertiser_id":"7012345678901234567","campaign_name":"bench","objective_type":"TRAFFIC","pad":"` + strings.Repeat("x", 4000) + `"}`)
	b.Run("validJSON", func(b *testing.B) {
		for b.Loop() {
			validJSON(body)
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		for b.Loop() {
			json.Valid(body)
		}
	})
}

package proxy

import (
	"bytes"
	"encoding/json"
	"testing"
)

var memberSeeds = []string{
	`{"advertiser_id":"1111111111111111111","campaign_name":"bench","pad":"xx"}`,
	`{"advertiser_ids":[1,"2",{"a":[]}],"advertiser_id":null}`,
	` { "a" : { "advertiser_id" : 1 } , "advertiser_id" : 2 , "advertiser_id" : "3" } `,
	`{"x":"a\"b\\","advertiser_id":1e3,"y":[true,false,null,-1.5e-3]}`,
	`{"advertiser_\u0069d":"1"}`,
	`{}`,
	`{"advertiser_id":"1","advertiser_ids":[]}`,
	`{"":"","advertiser_id":{"nested":"}"}}`,
}

// idMembers agrees with json.Unmarshal into a map on the members it
// reports, whenever it answers.
func TestIDMembers(t *testing.T) {
	for _, s := range memberSeeds {
		checkIDMembers(t, []byte(s))
	}
	if _, ok := idMembers([]byte(memberSeeds[0])); !ok {
		t.Errorf("%q: not read by hand", memberSeeds[0])
	}
}

func checkIDMembers(t *testing.T, body []byte) {
	t.Helper()
	body = bytes.TrimLeft(body, jsonLead)
	if !json.Valid(body) || len(body) == 0 || body[0] != '{' {
		return
	}
	got, ok := idMembers(body)
	if !ok {
		return
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(body, &all); err != nil {
		t.Fatalf("%q: %v", body, err)
	}
	for _, k := range []string{"advertiser_id", "advertiser_ids"} {
		w, wok := all[k]
		g, gok := got[k]
		if wok != gok || !bytes.Equal(w, g) {
			t.Errorf("%q: %s = %q (%v), decoder %q (%v)", body, k, g, gok, w, wok)
		}
	}
}

// FuzzIDMembers: idMembers never disagrees with the decoder.
func FuzzIDMembers(f *testing.F) {
	for _, s := range memberSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkIDMembers(t, body) })
}

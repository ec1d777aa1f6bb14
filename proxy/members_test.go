package proxy

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

var memberSeeds = []string{
	`{"advertiser_id":"1111111111111111111","campaign_name":"bench","pad":"xx"}`,
	`{"advertiser_ids":[1,"2",{"a":[]}],"advertiser_id":null}`,
	` { "a" : { "advertiser_id" : 1 } , "advertiser_id" : 2 , "ADVERTISER_ID" : "3" } `,
	`{"x":"a\"b\\","advertiser_id":1e3,"y":[true,false,null,-1.5e-3]}`,
	`{"advertiser_\u0069d":"1"}`,
	`{"advertiſer_id":"1","Advertiser_Ids":[]}`,
	`{}`,
	`{"":"","advertiser_id":{"nested":"}"}}`,
}

// scanIDMembers validates as json.Valid does, and agrees with
// decodedIDMembers whenever it reads the members by hand.
func TestIDMembers(t *testing.T) {
	for _, s := range memberSeeds {
		checkIDMembers(t, []byte(s))
	}
	if _, byHand, _ := scanIDMembers([]byte(memberSeeds[0])); !byHand {
		t.Errorf("%q: not read by hand", memberSeeds[0])
	}
}

func checkIDMembers(t *testing.T, body []byte) {
	t.Helper()
	body = bytes.TrimLeft(body, jsonLead)
	got, byHand, valid := scanIDMembers(body)
	if valid != json.Valid(body) {
		t.Fatalf("%q: scanIDMembers says valid %v, json.Valid %v", body, valid, !valid)
	}
	if !valid || !byHand || body[0] != '{' {
		return
	}
	want, err := decodedIDMembers(body)
	if err != nil {
		t.Fatalf("%q: %v", body, err)
	}
	if len(got) != len(want) || (len(got) > 0 && !reflect.DeepEqual(got, want)) {
		t.Errorf("%q: by hand %+v, decoder %+v", body, got, want)
	}
}

// FuzzIDMembers: scanIDMembers never disagrees with json.Valid or the
// decoder.
func FuzzIDMembers(f *testing.F) {
	for _, s := range memberSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkIDMembers(t, body) })
}

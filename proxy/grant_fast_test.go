package proxy

import "testing"

var appFieldSeeds = []string{
	`{"advertiser_id":"1111111111111111111","campaign_name":"bench"}`,
	`{"advertiser_id":"1","app_id":"7"}`,
	`{"advertiser_id":"1","APP_ID":"7"}`,
	`{"advertiser_id":"1","Secret":"s"}`,
	`{"advertiser_id":"1","\u0061pp_id":"7"}`,
	`{"advertiser_id":"1"," secret ":"s"}`,
	`{"advertiser_id":"1","ſecret":"s"}`,
	`advertiser_id=1&app_id=7`,
	`advertiser_id=1&app%5Fid=7`,
	`advertiser_id=1&+secret=7`,
	`advertiser_id=1&name=secretive`,
	`advertiser_id=1&name=x`,
	``,
}

func TestMayNameApp(t *testing.T) {
	for _, s := range appFieldSeeds {
		if got, want := bodyNamesApp([]byte(s)), parsedNamesApp([]byte(s)); got != want {
			t.Errorf("%q: bodyNamesApp %v, parsing says %v", s, got, want)
		}
	}
	// The common body is not parsed again.
	if mayNameApp([]byte(appFieldSeeds[0])) {
		t.Errorf("%q would be parsed again", appFieldSeeds[0])
	}
}

// FuzzMayNameApp: a body mayNameApp lets through unparsed never names an
// app field.
func FuzzMayNameApp(f *testing.F) {
	for _, s := range appFieldSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !mayNameApp(body) && parsedNamesApp(body) {
			t.Fatalf("%q names an app field but was not parsed", body)
		}
	})
}

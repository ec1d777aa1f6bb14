package setup

import (
	"slices"
	"testing"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// An advertiser the credential's grant names but another credential owns
// (its advertiser_ids), or no one owns (granted to several, configured
// under none: refused), is not listed as routing to the credential.
func TestAdvertiserRoutesLeaveOutWhatRoutesElsewhere(t *testing.T) {
	stored := []tokens.Advertiser{{ID: "1", Name: "Shop"}, {ID: "2"}, {ID: "3"}, {ID: "4"}}
	conflicts := []tokens.AdvertiserConflict{
		{AdvertiserID: "1", Owner: "main", Credentials: []string{"other"}}, // ours by config, granted to other too
		{AdvertiserID: "2", Owner: "other", Credentials: []string{"main"}}, // other's by config
		{AdvertiserID: "3", Credentials: []string{"main", "other"}},        // no one's
	}
	got := AdvertiserRoutes("main", []string{"1", "9"}, stored, conflicts)
	var ids []string
	for _, r := range got {
		ids = append(ids, r.ID)
	}
	if want := []string{"1", "4", "9"}; !slices.Equal(ids, want) {
		t.Errorf("routes %v, want %v", ids, want)
	}
	if src := got[0].Sources; !slices.Equal(src, []string{SourceConfig, SourceListing}) {
		t.Errorf("advertiser 1's sources %v, want config and listing", src)
	}
}

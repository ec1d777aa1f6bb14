package setup

// scopeNames names the Marketing API's numeric permission ids as TikTok's
// developer portal lists them ("App permissions"): the first level, and the
// finer ids TikTok grants most often. An id not listed here is shown as its
// number alone. tiktok_account grants carry string scopes, shown as they are.
var scopeNames = map[string]string{
	"1":        "Ad Account Management",
	"2":        "Ads Management",
	"3":        "Audience Management",
	"4":        "Reporting",
	"5":        "Measurement",
	"6":        "Creative Management",
	"7":        "App Management",
	"8":        "Pixel Management",
	"9":        "DPA Catalog Management",
	"10":       "Ad Account Information",
	"15":       "Business Center",
	"20":       "Campaign",
	"21":       "Ad Group",
	"22":       "Ad",
	"30":       "Read Custom Audiences",
	"31":       "Create and Update Custom Audiences",
	"40":       "Ad Account Level reports",
	"44":       "Consolidated Report",
	"100":      "Read Ad Account Information",
	"200":      "Read Campaigns",
	"201":      "Create and Update Campaigns",
	"210":      "Read Ad Groups",
	"211":      "Create and Update Ad Groups",
	"220":      "Read Ads",
	"221":      "Create and Update Ads",
	"10000":    "Reach & Frequency",
	"12000000": "Lead Management",
	"13000000": "TikTok Creator Marketplace",
	"15000000": "Ad Comments",
	"17000000": "Automated Rules",
	"18000000": "TikTok Accounts",
}

// Scope is one granted permission as the page and /api/credentials show it:
// TikTok's id, kept visible, and its name when known.
type Scope struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// namedScopes names each granted scope id.
func namedScopes(ids []string) []Scope {
	out := make([]Scope, len(ids))
	for i, id := range ids {
		out[i] = Scope{ID: id, Name: scopeNames[id]}
	}
	return out
}

package tokens

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

// Status is a credential's state without any secret: what /authorize,
// /api/credentials and the status command show.
type Status struct {
	Name             string        `json:"name"`
	Kind             string        `json:"kind"` // tiktok.KindAdvertiser or tiktok.KindTikTokAccount
	Authorized       bool          `json:"authorized"`
	Advertisers      []Advertiser  `json:"advertisers"`
	Scopes           []string      `json:"scopes"`
	AccessExpiresAt  time.Time     `json:"access_expires_at,omitzero"`
	RefreshExpiresAt time.Time     `json:"refresh_expires_at,omitzero"`
	Refreshable      bool          `json:"refreshable"`
	AuthorizedAt     time.Time     `json:"authorized_at,omitzero"`
	LastRefresh      RefreshResult `json:"last_refresh,omitzero"`
	ReauthRequired   bool          `json:"reauthorization_required"`
	ReauthReason     string        `json:"reauthorization_reason,omitempty"`
	// AccessRejected: TikTok rejected the access token itself, so it is
	// unusable whatever its expiry says.
	AccessRejected bool `json:"access_rejected,omitempty"`
	// AdvertiserConflicts are the advertisers this credential and another
	// both claim (Manager.CredentialFor says who wins, if anyone).
	AdvertiserConflicts []AdvertiserConflict `json:"advertiser_conflicts,omitempty"`
}

func (s *Source) status() Status {
	st := StatusFromRecord(s.cred.Name, s.cred.App.Kind, s.current())
	st.AdvertiserConflicts = s.m.conflictsOf(s.cred.Name)
	return st
}

// Status returns the credential's current state. A credential that is not
// authorized or needs re-authorization is first looked up in the store
// again (at most once a second), so a grant another process stored shows.
func (m *Manager) Status(name string) (Status, error) {
	s, ok := m.byName[name]
	if !ok {
		return Status{}, fmt.Errorf("%w: %q", ErrUnknownCredential, name)
	}
	return s.freshStatus(), nil
}

// Statuses returns every configured credential's state, in config order,
// re-read from the store as Status does.
func (m *Manager) Statuses() []Status {
	out := make([]Status, len(m.sources))
	for i, s := range m.sources {
		out[i] = s.freshStatus()
	}
	return out
}

func (s *Source) freshStatus() Status {
	s.recheckStore(s.m.ctx)
	return s.status()
}

// Clone returns a deep copy of r (nil for nil), so a caller may keep or
// change it without touching the original.
func (r *Record) Clone() *Record {
	if r == nil {
		return nil
	}
	c := *r
	c.Advertisers = slices.Clone(r.Advertisers)
	c.Scopes = slices.Clone(r.Scopes)
	return &c
}

// Refreshable reports whether the record's access token expires and can be
// renewed with a refresh token. Long-lived grants are not refreshable.
func (r *Record) Refreshable() bool {
	return r != nil && r.RefreshToken != "" && !r.AccessExpiresAt.IsZero()
}

// ReauthError says a credential must be authorized again: its refresh token
// expired or was revoked, or TikTok rejected its tokens. errors.Is(err,
// ErrReauthRequired) matches it.
type ReauthError struct {
	Credential string
	Reason     string // never contains a token
}

func (e *ReauthError) Error() string {
	return fmt.Sprintf("tokens: credential %q needs re-authorization: %s", e.Credential, e.Reason)
}

// Is makes errors.Is(err, ErrReauthRequired) true.
func (e *ReauthError) Is(target error) bool { return target == ErrReauthRequired }

// StatusFromRecord is the Status of credential name, of the configured
// kind ("" meaning tiktok.KindAdvertiser), as stored in rec; a nil rec means
// not authorized. It needs no Manager, so the status command can build the
// table from a Store alone.
func StatusFromRecord(name, kind string, rec *Record) Status {
	if kind == "" {
		kind = tiktok.KindAdvertiser
	}
	st := Status{Name: name, Kind: kind, Advertisers: []Advertiser{}, Scopes: []string{}}
	if rec == nil {
		return st
	}
	st.Authorized = rec.AccessToken != ""
	if rec.Advertisers != nil {
		st.Advertisers = slices.Clone(rec.Advertisers)
	}
	if rec.Scopes != nil {
		st.Scopes = slices.Clone(rec.Scopes)
	}
	st.AccessExpiresAt = rec.AccessExpiresAt
	st.RefreshExpiresAt = rec.RefreshExpiresAt
	st.Refreshable = rec.Refreshable()
	st.AuthorizedAt = rec.AuthorizedAt
	st.LastRefresh = rec.LastRefresh
	st.ReauthRequired = rec.ReauthRequired
	st.ReauthReason = rec.ReauthReason
	st.AccessRejected = rec.AccessRejected
	return st
}

// FormatStatusTable writes st as an aligned table with the columns NAME,
// AUTHORIZED, ADVERTISERS, KIND, ACCESS EXPIRES IN, REFRESH EXPIRES IN,
// REAUTH and LAST REFRESH. Times are shown relative to now. It never prints
// a token.
func FormatStatusTable(w io.Writer, st []Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// KIND follows the first three columns so scripts that match a row by
	// its leading "NAME AUTHORIZED ADVERTISERS" keep working.
	fmt.Fprintln(tw, "NAME\tAUTHORIZED\tADVERTISERS\tKIND\tACCESS EXPIRES IN\tREFRESH EXPIRES IN\tREAUTH\tLAST REFRESH")
	for _, s := range st {
		reauth := "no"
		if s.ReauthRequired {
			reauth = "yes"
			if s.ReauthReason != "" {
				reauth += " (" + oneLine(s.ReauthReason) + ")"
			}
		}
		access, refresh := "-", "-"
		if s.Authorized {
			access = expiresIn(s.AccessExpiresAt, now, "never")
			refresh = expiresIn(s.RefreshExpiresAt, now, "unknown")
			if !s.Refreshable {
				refresh = "-"
			}
			if s.AccessRejected {
				access = "rejected by TikTok"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			s.Name, yesNo(s.Authorized), advertiserList(s.Advertisers), s.Kind, access, refresh, reauth, lastRefresh(s.LastRefresh, now))
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// maxListedAdvertisers bounds the ADVERTISERS column: an agency grant can
// hold hundreds, which would bury every other column.
const maxListedAdvertisers = 3

func advertiserList(ads []Advertiser) string {
	if len(ads) == 0 {
		return "-"
	}
	parts := make([]string, 0, maxListedAdvertisers)
	for _, a := range ads[:min(len(ads), maxListedAdvertisers)] {
		part := a.ID
		if a.Name != "" {
			part += " (" + oneLine(a.Name) + ")"
		}
		parts = append(parts, part)
	}
	list := strings.Join(parts, ", ")
	if more := len(ads) - maxListedAdvertisers; more > 0 {
		list += fmt.Sprintf(" (+%d more)", more)
	}
	return list
}

func expiresIn(t, now time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	d := t.Sub(now)
	if d <= 0 {
		return "expired " + HumanDuration(-d) + " ago"
	}
	return HumanDuration(d)
}

func lastRefresh(r RefreshResult, now time.Time) string {
	if r.At.IsZero() {
		return "-"
	}
	ago := HumanDuration(now.Sub(r.At)) + " ago"
	if r.OK {
		return "ok " + ago
	}
	if r.Error == "" {
		return "failed " + ago
	}
	return "failed " + ago + ": " + oneLine(r.Error)
}

// durationUnits are the units HumanDuration writes, largest first.
var durationUnits = []struct {
	d    time.Duration
	name string
}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}}

// HumanDuration shows d (its absolute value) for people in its two largest
// units, rounded to the second of them, which is left out when zero:
// "3d4h", "14d", "5h12m", "42s". Rounding, not truncating, makes a deadline
// set 5 days ahead read "5d" a moment later rather than "4d23h". It is the
// one form of a duration in the CLI's tables, messages and flag defaults.
func HumanDuration(d time.Duration) string {
	d = d.Abs()
	for i, u := range durationUnits[:len(durationUnits)-1] {
		next := durationUnits[i+1]
		r := d.Round(next.d)
		if r < u.d {
			continue
		}
		if rest := r % u.d / next.d; rest > 0 {
			return fmt.Sprintf("%d%s%d%s", r/u.d, u.name, rest, next.name)
		}
		return fmt.Sprintf("%d%s", r/u.d, u.name)
	}
	return fmt.Sprintf("%ds", d.Round(time.Second)/time.Second)
}

// oneLine keeps a table row on one line whatever a reason or name contains.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

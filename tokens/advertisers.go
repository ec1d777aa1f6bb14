package tokens

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

// CredentialFor returns the credential that owns advertiserID: the one
// whose advertiser_ids (config) name it, else the one whose grant or
// periodic advertiser listing does. An advertiser that the grants or
// listings of several credentials name, and no credential's advertiser_ids,
// is owned by none (ok false): Claimants lists them.
func (m *Manager) CredentialFor(advertiserID string) (name string, ok bool) {
	m.idxMu.RLock()
	defer m.idxMu.RUnlock()
	name, ok = m.index[advertiserID]
	return name, ok
}

// Claimants returns, in config order, the credentials whose grants or
// listings all name advertiserID when no credential's advertiser_ids does:
// a request naming it could be meant for any of them, so it has no owner
// until the operator adds it to one credential's advertiser_ids. It
// returns nil for every other advertiser.
func (m *Manager) Claimants(advertiserID string) []string {
	m.idxMu.RLock()
	defer m.idxMu.RUnlock()
	if c, ok := m.conflicts[advertiserID]; ok && c.Owner == "" {
		return slices.Clone(c.Credentials)
	}
	return nil
}

// AdvertiserConflict is an advertiser that the grants or listings of
// another credential name besides its owner, or of several credentials
// when none owns it.
type AdvertiserConflict struct {
	AdvertiserID string `json:"advertiser_id"`
	// Owner is the credential whose advertiser_ids name it, which every
	// request for it uses; "" when none does, and requests naming it are
	// then refused (90001).
	Owner string `json:"owner,omitempty"`
	// Credentials are those whose grant or listing names it, config order.
	Credentials []string `json:"credentials"`
}

// conflictsOf returns the conflicts the credential takes part in, ordered
// by advertiser id.
func (m *Manager) conflictsOf(name string) []AdvertiserConflict {
	m.idxMu.RLock()
	defer m.idxMu.RUnlock()
	return ConflictsOf(m.conflicts, name)
}

// advertiserLoop lists the credential's advertisers now and every
// AdvertiserInterval until ctx ends. The first listing counts towards
// Listed.
func (s *Source) advertiserLoop(ctx context.Context) {
	s.listAdvertisers(ctx)
	if s.m.unlisted.Add(-1) == 0 {
		close(s.m.listed)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.m.after(s.m.advInterval):
		}
		s.listAdvertisers(ctx)
	}
}

// listAdvertisers fetches the advertisers the token may act for and stores
// them when they changed. Failures are logged: the known list stays.
func (s *Source) listAdvertisers(ctx context.Context) {
	// A credential that cannot serve has nothing to list with; but a grant
	// another process stored shows in the gauges and on the page within
	// an interval, even without any request.
	s.recheckStore(ctx)
	if s.cred.App.Kind == tiktok.KindTikTokAccount {
		// TikTok account grants name no advertisers: there is no list to
		// fetch, and asking every interval would only log a failure.
		return
	}
	s.mu.Lock()
	rec := s.rec
	ok := rec != nil && !rec.ReauthRequired && usable(rec, s.m.now())
	s.mu.Unlock()
	if !ok {
		return
	}
	used := rec.AccessToken
	list, err := s.m.api.Advertisers(ctx, s.cred.App, used)
	var ae *tiktok.APIError
	if errors.As(err, &ae) && tokenRefused(ae.Code) {
		// The listing doubles as a validation of the grant: an idle
		// credential whose grant was revoked shows it here, before any script
		// fails. Its refusal is one rejection like a script's: a refreshable
		// token is refreshed once, and a revoked grant then fails the
		// refresh; a long-lived one is checked again at once, so one glitch
		// of the listing does not end a grant TikTok still accepts.
		s.m.log.Warn("TikTok rejected the access token while listing advertisers", "credential", s.cred.Name, "code", ae.Code)
		s.rejectedBy(ctx, used, ae.Code)
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			s.m.log.Warn("listing advertisers failed", "credential", s.cred.Name, "error", err.Error())
		}
		return
	}
	s.storeAdvertisers(ctx, used, list)
}

// storeAdvertisers stores the advertisers TikTok listed for the access
// token used, when they changed and the token is still the current one.
func (s *Source) storeAdvertisers(ctx context.Context, used string, list []tiktok.Advertiser) {
	named := make([]Advertiser, 0, len(list))
	ids := make([]string, 0, len(list)+len(s.cred.AdvertiserIDs))
	for _, a := range list {
		named = append(named, Advertiser{ID: a.ID, Name: a.Name})
		ids = append(ids, a.ID)
	}
	ids = append(ids, s.cred.AdvertiserIDs...)
	_, err := s.commit(ctx, func(latest *Record) (*Record, error) {
		if latest == nil || latest.AccessToken != used {
			return nil, errSuperseded
		}
		advs := mergeAdvertisers(append(named, latest.Advertisers...), ids)
		if slices.Equal(advs, latest.Advertisers) {
			return nil, errUnchanged
		}
		r := latest.Clone()
		r.Advertisers = advs
		return r, nil
	})
	if err != nil && !errors.Is(err, errSuperseded) && !errors.Is(err, errUnchanged) {
		s.m.log.Warn("storing the advertiser list failed", "credential", s.cred.Name, "error", err.Error())
	}
}

// mergeAdvertisers lists ids once each, in order, named from known.
func mergeAdvertisers(known []Advertiser, ids []string) []Advertiser {
	names := make(map[string]string, len(known))
	for _, a := range known {
		if a.Name != "" && names[a.ID] == "" {
			names[a.ID] = a.Name
		}
	}
	out := make([]Advertiser, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, Advertiser{ID: id, Name: names[id]})
	}
	return out
}

// AdvertiserIDs is the ids of ads, in order.
func AdvertiserIDs(ads []Advertiser) []string {
	ids := make([]string, len(ads))
	for i, a := range ads {
		ids[i] = a.ID
	}
	return ids
}

// Route is how serve routes requests naming an advertiser among creds
// (config order), given the advertisers each one's grant or listing names
// (granted, by credential): owners maps an advertiser to its credential
// — the one whose advertiser_ids name it, else the only one whose grant
// names it — and conflicts holds every advertiser named besides its owner,
// or by several credentials and none's advertiser_ids (owned by none:
// requests naming it are refused).
func Route(creds []Credential, granted map[string][]string) (owners map[string]string, conflicts map[string]AdvertiserConflict) {
	owners = make(map[string]string)
	claims := make(map[string][]string)
	for _, c := range creds {
		for _, id := range c.AdvertiserIDs {
			// config.Validate refuses an id under two credentials.
			if _, taken := owners[id]; !taken {
				owners[id] = c.Name
			}
		}
		for _, id := range granted[c.Name] {
			if !slices.Contains(claims[id], c.Name) {
				claims[id] = append(claims[id], c.Name)
			}
		}
	}
	conflicts = make(map[string]AdvertiserConflict)
	for id, names := range claims {
		owner, configured := owners[id]
		switch {
		case configured && (len(names) > 1 || names[0] != owner):
			conflicts[id] = AdvertiserConflict{AdvertiserID: id, Owner: owner, Credentials: names}
		case configured:
		case len(names) == 1:
			owners[id] = names[0]
		default:
			conflicts[id] = AdvertiserConflict{AdvertiserID: id, Credentials: names}
		}
	}
	return owners, conflicts
}

// ConflictsOf returns the conflicts name takes part in, ordered by
// advertiser id.
func ConflictsOf(conflicts map[string]AdvertiserConflict, name string) []AdvertiserConflict {
	var out []AdvertiserConflict
	for _, c := range conflicts {
		if c.Owner == name || slices.Contains(c.Credentials, name) {
			out = append(out, AdvertiserConflict{AdvertiserID: c.AdvertiserID, Owner: c.Owner, Credentials: slices.Clone(c.Credentials)})
		}
	}
	slices.SortFunc(out, func(a, b AdvertiserConflict) int { return strings.Compare(a.AdvertiserID, b.AdvertiserID) })
	return out
}

// reindex rebuilds the advertiser → credential map. Config decides: an
// advertiser in a credential's advertiser_ids is that credential's
// whatever any grant says. Any other belongs to the one credential whose
// grant or listing names it; one that several name belongs to none
// (Claimants). Each conflict is logged once, when it appears.
func (m *Manager) reindex() {
	m.idxMu.Lock()
	defer m.idxMu.Unlock()
	configured := make([]Credential, 0, len(m.sources))
	granted := make(map[string][]string, len(m.sources))
	for _, s := range m.sources {
		s.mu.Lock()
		if s.rec != nil {
			granted[s.cred.Name] = AdvertiserIDs(s.rec.Advertisers)
		}
		s.mu.Unlock()
		configured = append(configured, s.cred)
	}
	idx, conflicts := Route(configured, granted)
	for id, c := range conflicts {
		if c.Owner != "" {
			others := slices.DeleteFunc(slices.Clone(c.Credentials), func(n string) bool { return n == c.Owner })
			if m.warnOnce(id + " " + c.Owner + " " + strings.Join(others, ",")) {
				m.log.Warn("an advertiser in one credential's advertiser_ids is granted to another credential too: requests for it use the configured credential",
					"advertiser_id", id, "credential", c.Owner, "granted_to", strings.Join(others, ", "))
			}
			continue
		}
		if m.warnOnce(id + " " + strings.Join(c.Credentials, ",")) {
			m.log.Warn("an advertiser is granted to several credentials and in none's advertiser_ids: requests naming it are refused (90001) until it is added to one credential's advertiser_ids",
				"advertiser_id", id, "credentials", strings.Join(c.Credentials, ", "))
		}
	}
	m.index, m.conflicts = idx, conflicts
}

// warnOnce reports whether the conflict described by key is new to this
// Manager: a grant stored again (re-authorization, a listing) rebuilds the
// index without logging the same conflict again. Called with idxMu held.
func (m *Manager) warnOnce(key string) bool {
	if m.warned[key] {
		return false
	}
	if m.warned == nil {
		m.warned = make(map[string]bool)
	}
	m.warned[key] = true
	return true
}

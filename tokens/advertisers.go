package tokens

import (
	"context"
	"errors"
	"slices"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
)

// CredentialFor returns the credential that owns advertiserID: from config,
// the grant, or the periodic advertiser listing.
func (m *Manager) CredentialFor(advertiserID string) (name string, ok bool) {
	m.idxMu.RLock()
	defer m.idxMu.RUnlock()
	name, ok = m.index[advertiserID]
	return name, ok
}

// advertiserLoop lists the credential's advertisers now and every
// AdvertiserInterval until ctx ends.
func (s *Source) advertiserLoop(ctx context.Context) {
	for {
		s.listAdvertisers(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.m.after(s.m.advInterval):
		}
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

func advertiserIDs(ads []Advertiser) []string {
	ids := make([]string, len(ads))
	for i, a := range ads {
		ids[i] = a.ID
	}
	return ids
}

// reindex rebuilds the advertiser → credential map. The first credential
// in config order wins an advertiser both claim.
func (m *Manager) reindex() {
	m.idxMu.Lock()
	defer m.idxMu.Unlock()
	idx := make(map[string]string)
	for _, s := range m.sources {
		s.mu.Lock()
		ids := slices.Clone(s.cred.AdvertiserIDs)
		if s.rec != nil {
			ids = append(ids, advertiserIDs(s.rec.Advertisers)...)
		}
		s.mu.Unlock()
		for _, id := range ids {
			if _, taken := idx[id]; !taken {
				idx[id] = s.cred.Name
			}
		}
	}
	m.index = idx
}

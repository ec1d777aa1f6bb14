package tokens

import (
	"context"
)

// watchChanges hands each credential name read from changes to its
// Source, until ctx ends or changes is closed. Names of credentials this
// Manager does not serve are ignored. It never blocks on a Source: a name
// that arrives while its credential is already due for a re-read is
// coalesced into that re-read.
func (m *Manager) watchChanges(ctx context.Context, changes <-chan string) {
	for {
		select {
		case <-ctx.Done():
			return
		case name, ok := <-changes:
			if !ok {
				return
			}
			if s, known := m.byName[name]; known {
				select {
				case s.changed <- struct{}{}:
				default: // a re-read is already due; it will see this change too
				}
			}
		}
	}
}

// changeLoop re-reads the credential's record each time the store reports
// it changed, one read at a time, and adopts it when it is newer (a refresh
// another replica made, a new grant, a re-authorization mark), so a
// replica serves another's result without waiting for a request or its own
// schedule. It runs until ctx ends.
func (s *Source) changeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.changed:
		}
		s.readChange(ctx)
	}
}

// readChange re-reads the record, each attempt bounded by recheckTimeout.
// A failed read is tried again every recheckEvery until one succeeds: the
// notification is not repeated, and the store being unreachable is exactly
// when a change may otherwise go unseen until the next request.
func (s *Source) readChange(ctx context.Context) {
	for {
		before := s.generation()
		readCtx, cancel := context.WithTimeout(ctx, recheckTimeout)
		rec, err := s.reload(readCtx)
		cancel()
		if err == nil {
			if rec != nil && rec.Generation > before {
				s.m.log.Debug("adopted a record another writer stored", "credential", s.cred.Name, "generation", rec.Generation)
			}
			return
		}
		s.m.log.Debug("re-reading a changed record failed; trying again", "credential", s.cred.Name, "error", err.Error())
		select {
		case <-ctx.Done():
			return
		case <-s.m.after(recheckEvery):
		}
	}
}

// generation is the in-memory record's generation; 0 without a record.
func (s *Source) generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rec == nil {
		return 0
	}
	return s.rec.Generation
}

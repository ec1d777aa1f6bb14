package setup

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"sync"
	"time"
)

// StateTTL is how long a minted state stays valid: TikTok's consent page
// plus a login rarely take longer, and a short life limits a leaked state.
const StateTTL = 10 * time.Minute

// maxStates bounds the pending-state map so repeated visits to
// /authorize/{name} cannot grow memory without limit.
const maxStates = 1000

// flowState is one minted OAuth state. A browser state carries the SHA-256
// of the random binding value held in the browser's cookie; a CLI state
// (bindingHash nil) is bound to nobody, which is acceptable because minting
// one requires admin access (see Admin.Begin).
type flowState struct {
	credential  string
	bindingHash []byte
	expires     time.Time
	// done is closed once the flow has an outcome; result or err is then set.
	done   chan struct{}
	result Result
	err    error
	// keepUntil is when a finished state is dropped; until then the CLI can
	// still collect its outcome.
	keepUntil time.Time
	// claimSeq orders claimed states: the browser's latest flow is shown.
	// Zero until the state is claimed (used).
	claimSeq uint64
}

func (s *flowState) cli() bool { return s.bindingHash == nil }

// used reports whether the state was claimed: each works once.
func (s *flowState) used() bool { return s.claimSeq != 0 }

// dropAt is when the store forgets the state: at expiry while pending, at
// keepUntil once claimed.
func (s *flowState) dropAt() time.Time {
	if s.used() {
		return s.keepUntil
	}
	return s.expires
}

// stateStore is the bounded, expiring, in-memory set of minted states.
// Safe for concurrent use.
type stateStore struct {
	now func() time.Time

	mu     sync.Mutex
	states map[string]*flowState
	claims uint64 // claims so far, for flowState.claimSeq
}

func newStateStore(now func() time.Time) *stateStore {
	return &stateStore{now: now, states: make(map[string]*flowState)}
}

// randomToken returns 256 random bits, base64url without padding.
func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("setup: reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func hashBinding(binding string) []byte {
	h := sha256.Sum256([]byte(binding))
	return h[:]
}

// mint stores a fresh state for credential. An empty binding mints a CLI
// state.
func (s *stateStore) mint(credential, binding string) (string, *flowState, error) {
	id, err := randomToken()
	if err != nil {
		return "", nil, err
	}
	now := s.now()
	st := &flowState{
		credential: credential,
		expires:    now.Add(StateTTL),
		done:       make(chan struct{}),
	}
	if binding != "" {
		st.bindingHash = hashBinding(binding)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	if len(s.states) >= maxStates {
		s.evictOldestLocked()
	}
	s.states[id] = st
	return id, st, nil
}

func (s *stateStore) sweepLocked(now time.Time) {
	for id, st := range s.states {
		if !now.Before(st.dropAt()) {
			delete(s.states, id)
		}
	}
}

// evictOldestLocked drops the state closest to expiry: under a flood of
// mints the oldest pending flow is the least likely to still be completed.
func (s *stateStore) evictOldestLocked() {
	var oldest string
	var at time.Time
	for id, st := range s.states {
		exp := st.dropAt()
		if oldest == "" || exp.Before(at) {
			oldest, at = id, exp
		}
	}
	delete(s.states, oldest)
}

// claim checks that state exists, is unused and unexpired, and that binding
// matches (for a browser state), then marks it used so no other request can
// complete it. A binding mismatch does not consume the state: the browser
// that started the flow may still finish it.
func (s *stateStore) claim(state, binding string) (*flowState, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.states[state]
	switch {
	case state == "":
		return nil, errMissingState
	case !ok:
		return nil, errUnknownState
	case st.used():
		return nil, errUsedState
	case !now.Before(st.expires):
		delete(s.states, state)
		return nil, errExpiredState
	}
	if !st.cli() {
		if binding == "" {
			return nil, errNoBinding
		}
		if subtle.ConstantTimeCompare(st.bindingHash, hashBinding(binding)) != 1 {
			return nil, errWrongBinding
		}
	}
	st.keepUntil = now.Add(StateTTL)
	s.claims++
	st.claimSeq = s.claims
	return st, nil
}

// finish records the outcome of a claimed state and wakes its waiters.
func (s *stateStore) finish(st *flowState, res Result, err error) {
	s.mu.Lock()
	st.result, st.err = res, err
	s.mu.Unlock()
	close(st.done)
}

// claimed returns a browser state already claimed, pending or finished,
// to the browser it is bound to. It lets a reloaded callback report the
// first outcome instead of an error. A CLI state is never returned: bound
// to nobody, its callback URL would show the grant to anyone who saw it (an
// access log), and its terminal already showed the outcome.
func (s *stateStore) claimed(state, binding string) (*flowState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.states[state]
	if !ok || !st.used() || st.cli() || binding == "" {
		return nil, false
	}
	if subtle.ConstantTimeCompare(st.bindingHash, hashBinding(binding)) != 1 {
		return nil, false
	}
	return st, true
}

// latest returns the browser's most recently claimed state for credential,
// pending or finished: the flow whose outcome the callback's redirect
// shows. false when the browser has none (or no binding).
func (s *stateStore) latest(binding, credential string) (*flowState, bool) {
	if binding == "" {
		return nil, false
	}
	now := s.now()
	h := hashBinding(binding)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	var best *flowState
	for _, st := range s.states {
		if !st.used() || st.cli() || st.credential != credential || subtle.ConstantTimeCompare(st.bindingHash, h) != 1 {
			continue
		}
		if best == nil || st.claimSeq > best.claimSeq {
			best = st
		}
	}
	return best, best != nil
}

// credentialOf names the credential of a known state, so a refused
// callback can say which authorization failed; "" when unknown. The state
// is a secret only its holder knows, and a name is no secret.
func (s *stateStore) credentialOf(state string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.states[state]; ok {
		return st.credential
	}
	return ""
}

// lookup returns a CLI state, pending or finished, for the wait API.
func (s *stateStore) lookup(state string) (*flowState, bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	st, ok := s.states[state]
	if !ok || !st.cli() {
		return nil, false
	}
	return st, true
}

// outcome reads a finished state's result under the lock.
func (s *stateStore) outcome(st *flowState) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return st.result, st.err
}

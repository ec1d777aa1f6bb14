package redisstore

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// subscribeRetryMax caps the wait between attempts to (re)subscribe, so a
// Redis that refuses SUBSCRIBE (an ACL) is not asked in a tight loop while
// polling does the work.
const subscribeRetryMax = 30 * time.Second

// generationsScript returns every stored credential with its generation:
// {name1, gen1, name2, gen2, ...}, one consistent snapshot for Watch's
// polling. KEYS: names set. ARGV: record key prefix.
var generationsScript = redis.NewScript(`
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local gen = redis.call('HGET', ARGV[1] .. name, 'gen')
  if gen then
    out[#out + 1] = name
    out[#out + 1] = gen
  end
end
return out
`)

// change is one credential's generation as announced or polled; 0: deleted.
type change struct {
	name string
	gen  uint64
}

// Watch sends the name of every credential another writer (or this one)
// changes, until ctx ends; then the channel is closed. Changes arrive by
// pub/sub within milliseconds, and polling every Options.PollInterval finds
// those whose notification was lost (pub/sub refused or reconnecting,
// Redis restarted). A name may be sent more than once for one change; the
// receiver re-reads the record. Changes before the first successful poll
// are reported only if that poll is not Watch's first attempt (Redis was
// unreachable at start): then every stored name is sent once.
func (s *Store) Watch(ctx context.Context) <-chan string {
	out := make(chan string, 16)
	notes := make(chan change, 16)
	go s.subscribe(ctx, notes)
	go s.watch(ctx, notes, out)
	return out
}

// watch merges notifications and polls into out, sending a name when its
// generation differs from the last one seen.
func (s *Store) watch(ctx context.Context, notes <-chan change, out chan<- string) {
	defer close(out)
	var seen map[string]uint64 // nil until the first successful poll
	first := true
	send := func(name string) bool {
		select {
		case out <- name:
			return true
		case <-ctx.Done():
			return false
		}
	}
	poll := func() bool {
		snap, err := s.generations(ctx)
		if err != nil {
			first = false
			return true // Redis unreachable: the next tick tries again
		}
		if seen == nil && first {
			seen, first = snap, false
			return true
		}
		for name, gen := range snap {
			if seen[name] != gen && !send(name) {
				return false
			}
		}
		for name := range seen {
			if _, ok := snap[name]; !ok && !send(name) {
				return false
			}
		}
		seen = snap
		return true
	}
	if !poll() {
		return
	}
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if !poll() {
				return
			}
		case c := <-notes:
			if seen != nil && c.gen != 0 && c.gen <= seen[c.name] {
				continue // already reported by a poll
			}
			if seen != nil {
				if c.gen == 0 {
					delete(seen, c.name)
				} else {
					seen[c.name] = c.gen
				}
			}
			if !send(c.name) {
				return
			}
		}
	}
}

// generations is a snapshot of every stored credential's generation.
func (s *Store) generations(ctx context.Context) (map[string]uint64, error) {
	flat, err := generationsScript.Run(ctx, s.rdb, []string{s.namesKey()}, s.recordKey("")).StringSlice()
	if err != nil {
		return nil, err
	}
	snap := make(map[string]uint64, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		gen, err := strconv.ParseUint(flat[i+1], 10, 64)
		if err != nil {
			continue // not a record this store wrote; Get reports it
		}
		snap[flat[i]] = gen
	}
	return snap, nil
}

// subscribe forwards Put's and Delete's announcements to notes until ctx
// ends. go-redis reconnects and resubscribes a broken connection on the
// next Receive; a refused subscription is retried with a growing pause.
func (s *Store) subscribe(ctx context.Context, notes chan<- change) {
	ps := s.rdb.Subscribe(ctx, s.channel())
	// Receive blocks without a deadline; closing the PubSub ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	defer ps.Close()
	wait := s.poll
	for ctx.Err() == nil {
		msg, err := ps.Receive(ctx)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, subscribeRetryMax)
			continue
		}
		m, ok := msg.(*redis.Message)
		if !ok {
			wait = s.poll // a subscription confirmation or pong: healthy again
			continue
		}
		name, genText, ok := strings.Cut(m.Payload, " ")
		gen, err := strconv.ParseUint(genText, 10, 64)
		if !ok || err != nil {
			continue
		}
		select {
		case notes <- change{name: name, gen: gen}:
		case <-ctx.Done():
			return
		}
	}
}

// Package redisstore keeps tokens.Records in Redis, so several proxies share
// one set of grants, and gives them a refresh lease so exactly one of them
// refreshes a credential at a time.
//
// Each credential is a hash under KeyPrefix+"cred:"+name holding its
// generation ("gen") beside the record as JSON: with a Sealer its tokens
// sealed as the file store seals them ("sealed"), else in the clear
// ("record"). Put is one Lua script that compares the
// generation, writes, adds the name to the set KeyPrefix+"credentials" (for
// List) and publishes "name generation" on KeyPrefix+"changed", all
// atomically. Redis decides durability: run it with appendonly yes and
// appendfsync always (the deploy/kubernetes example does) so an
// acknowledged Put survives a Redis crash.
package redisstore

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/seal"
)

// Defaults for Options.
const (
	DefaultAddress      = "127.0.0.1:6379"
	DefaultKeyPrefix    = "tiktok-auth-proxy:"
	DefaultDialTimeout  = 5 * time.Second
	DefaultPollInterval = 500 * time.Millisecond
	DefaultAcquireWait  = 2 * time.Second
)

// Options say where the store is and how records are kept.
type Options struct {
	// Address is host:port. Default DefaultAddress.
	Address  string
	Username string // empty: the default user (or none)
	Password string
	DB       int
	// KeyPrefix starts every key and the channel name, so several
	// deployments can share one Redis. Default DefaultKeyPrefix.
	KeyPrefix string
	// TLS connects with TLS, verifying the server against the system's
	// root certificates and the host of Address.
	TLS bool
	// DialTimeout bounds opening a connection. Default DefaultDialTimeout.
	DialTimeout time.Duration
	// Sealer seals each record's tokens (AES-256-GCM, as the file store
	// does); nil stores them in the clear. A record sealed with one
	// configuration is refused by the other, never misread.
	Sealer *seal.Sealer
	// AcquireWait is how long Acquire waits for a lease another replica
	// holds to be released before it reports it held. A replica that
	// wanted to refresh while another did then takes the lease right
	// after, re-reads the store and finds the new token, instead of
	// retrying later, possibly after its own token expired. Default
	// DefaultAcquireWait; negative: no wait.
	AcquireWait time.Duration
	// PollInterval is how often Watch compares generations, the fallback
	// that finds changes whose notification was missed (pub/sub down or
	// refused). Default DefaultPollInterval.
	PollInterval time.Duration
}

// Store is a tokens.Store in Redis, safe for concurrent use. It also
// implements the refresh lease (Acquire) and change notification (Watch).
type Store struct {
	rdb         *redis.Client
	prefix      string
	sealer      *seal.Sealer
	poll        time.Duration
	acquireWait time.Duration
}

var _ tokens.Store = (*Store)(nil)

// Open returns a Store for opts. It does not contact Redis, so a proxy can
// start while Redis is still coming up; Ping says when it is reachable.
func Open(opts Options) (*Store, error) {
	addr := opts.Address
	if addr == "" {
		addr = DefaultAddress
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("redisstore: address %q: %w", addr, err)
	}
	ro := &redis.Options{
		Addr:        addr,
		Username:    opts.Username,
		Password:    opts.Password,
		DB:          opts.DB,
		DialTimeout: opts.DialTimeout,
		// A caller's deadline (a request's, a refresh's) bounds each
		// command, not only go-redis's own read and write timeouts.
		ContextTimeoutEnabled: true,
		// The proxy speaks RESP2 only: notifications it needs come from its
		// own pub/sub connection, not RESP3 push messages.
		Protocol: 2,
		// CLIENT SETINFO is unknown before Redis 7.2; it adds nothing here.
		DisableIdentity: true,
	}
	if ro.DialTimeout <= 0 {
		ro.DialTimeout = DefaultDialTimeout
	}
	if opts.TLS {
		ro.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	prefix := opts.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	poll := opts.PollInterval
	if poll <= 0 {
		poll = DefaultPollInterval
	}
	wait := opts.AcquireWait
	switch {
	case wait == 0:
		wait = DefaultAcquireWait
	case wait < 0:
		wait = 0
	}
	return &Store{rdb: redis.NewClient(ro), prefix: prefix, sealer: opts.Sealer, poll: poll, acquireWait: wait}, nil
}

func (s *Store) recordKey(credential string) string { return s.prefix + "cred:" + credential }
func (s *Store) namesKey() string                   { return s.prefix + "credentials" }
func (s *Store) leaseKey(credential string) string  { return s.prefix + "lease:" + credential }
func (s *Store) channel() string                    { return s.prefix + "changed" }

// Hash fields of a credential's record.
const (
	fieldGen    = "gen"
	fieldPlain  = "record"
	fieldSealed = "sealed"
)

// putScript is the compare-and-swap of tokens.Store.Put. The publish is a
// pcall: a Redis that refuses PUBLISH must not turn a write already made
// into a reported failure (Watch's polling finds the change anyway).
//
// KEYS: record hash, names set. ARGV: expect, field to set, value, field to
// clear, credential, channel. Returns {1, new generation} or {0, stored
// generation}.
var putScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
if cur ~= tonumber(ARGV[1]) then
  return {0, cur}
end
local gen = cur + 1
redis.call('HSET', KEYS[1], 'gen', gen, ARGV[2], ARGV[3])
redis.call('HDEL', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
redis.pcall('PUBLISH', ARGV[6], ARGV[5] .. ' ' .. gen)
return {1, gen}
`)

// deleteScript removes a record and announces it with generation 0.
// KEYS: record hash, names set. ARGV: credential, channel.
var deleteScript = redis.NewScript(`
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('SREM', KEYS[2], ARGV[1])
  redis.pcall('PUBLISH', ARGV[2], ARGV[1] .. ' 0')
end
return 0
`)

// Get returns the credential's record, or tokens.ErrNotFound.
func (s *Store) Get(ctx context.Context, credential string) (*tokens.Record, error) {
	vals, err := s.rdb.HMGet(ctx, s.recordKey(credential), fieldGen, fieldPlain, fieldSealed).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: get %q: %w", credential, err)
	}
	return s.decode(credential, vals)
}

// List returns every record, in no particular order.
func (s *Store) List(ctx context.Context) ([]*tokens.Record, error) {
	names, err := s.rdb.SMembers(ctx, s.namesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: list: %w", err)
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(names))
	for i, name := range names {
		cmds[i] = pipe.HMGet(ctx, s.recordKey(name), fieldGen, fieldPlain, fieldSealed)
	}
	if len(names) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("redisstore: list: %w", err)
		}
	}
	out := make([]*tokens.Record, 0, len(names))
	for i, name := range names {
		r, err := s.decode(name, cmds[i].Val())
		if errors.Is(err, tokens.ErrNotFound) {
			continue // deleted between the two reads
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Put stores rec when the stored generation equals expect (0: no record),
// as documented on tokens.Store, and sets rec.Generation to expect+1.
func (s *Store) Put(ctx context.Context, rec *tokens.Record, expect uint64) error {
	if rec == nil || rec.Credential == "" {
		return errors.New("redisstore: put: record without credential name")
	}
	next := rec.Clone()
	next.Generation = expect + 1
	value, set, clear, err := s.encode(next)
	if err != nil {
		return err
	}
	res, err := putScript.Run(ctx, s.rdb,
		[]string{s.recordKey(rec.Credential), s.namesKey()},
		strconv.FormatUint(expect, 10), set, value, clear, rec.Credential, s.channel()).Int64Slice()
	if err != nil {
		return fmt.Errorf("redisstore: put %q: %w", rec.Credential, err)
	}
	if len(res) != 2 {
		return fmt.Errorf("redisstore: put %q: unexpected script result %v", rec.Credential, res)
	}
	if res[0] != 1 {
		return fmt.Errorf("redisstore: put %q: stored generation %d, expected %d: %w", rec.Credential, res[1], expect, tokens.ErrConflict)
	}
	rec.Generation = next.Generation
	return nil
}

// Delete removes the credential's record; deleting a missing one is not an
// error.
func (s *Store) Delete(ctx context.Context, credential string) error {
	err := deleteScript.Run(ctx, s.rdb, []string{s.recordKey(credential), s.namesKey()}, credential, s.channel()).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redisstore: delete %q: %w", credential, err)
	}
	return nil
}

// Ping reports whether Redis answers (readiness, the store_up gauge).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstore: ping %s: %w", s.rdb.Options().Addr, err)
	}
	return nil
}

// Client is the store's Redis connection, for other state the replicas
// share through the same Redis (the apps' rate-limit budgets). Close
// closes it.
func (s *Store) Client() *redis.Client { return s.rdb }

// Close closes the connections; later calls fail.
func (s *Store) Close() error {
	if err := s.rdb.Close(); err != nil {
		return fmt.Errorf("redisstore: close: %w", err)
	}
	return nil
}

// encode returns the record's stored form, the field it goes in and the
// field it must clear (the other form).
func (s *Store) encode(r *tokens.Record) (value []byte, set, clear string, err error) {
	set, clear = fieldPlain, fieldSealed
	if s.sealer != nil {
		if r, err = s.sealer.SealRecord(r); err != nil {
			return nil, "", "", fmt.Errorf("redisstore: seal %q: %w", r.Credential, err)
		}
		set, clear = fieldSealed, fieldPlain
	}
	if value, err = json.Marshal(r); err != nil {
		return nil, "", "", fmt.Errorf("redisstore: encode %q: %w", r.Credential, err)
	}
	return value, set, clear, nil
}

// decode turns an HMGET of gen, record, sealed into a Record. The hash's
// generation is the one the CAS compares, so it is the one returned.
func (s *Store) decode(credential string, vals []any) (*tokens.Record, error) {
	if len(vals) != 3 || vals[0] == nil {
		return nil, tokens.ErrNotFound
	}
	gen, err := strconv.ParseUint(fmt.Sprint(vals[0]), 10, 64)
	if err != nil || gen == 0 {
		return nil, fmt.Errorf("redisstore: credential %q: bad generation %q", credential, vals[0])
	}
	plain, _ := vals[1].(string)
	sealed, _ := vals[2].(string)
	data := plain
	switch {
	case s.sealer == nil && sealed != "":
		return nil, fmt.Errorf("redisstore: credential %q: the record is encrypted but no store.encryption_key is configured", credential)
	case s.sealer != nil && sealed == "":
		// Sealing it silently would hide a misconfiguration.
		return nil, fmt.Errorf("redisstore: credential %q: the record is stored unencrypted but store.encryption_key is configured", credential)
	case s.sealer != nil:
		data = sealed
	}
	var r tokens.Record
	if err := json.Unmarshal([]byte(data), &r); err != nil {
		return nil, fmt.Errorf("redisstore: credential %q: cannot parse the record: %w", credential, err)
	}
	// A record copied under another credential's key is refused (sealed
	// tokens are bound to the name inside it).
	if r.Credential != credential {
		return nil, fmt.Errorf("redisstore: credential %q: the stored record names credential %q", credential, r.Credential)
	}
	if s.sealer != nil {
		if err := s.sealer.OpenRecord(&r); err != nil {
			return nil, fmt.Errorf("redisstore: credential %q: the record cannot be decrypted (wrong store.encryption_key?): %w", credential, err)
		}
	}
	r.Generation = gen
	return &r, nil
}

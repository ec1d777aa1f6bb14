package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/setup"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

func runAuthorize(ctx context.Context, args []string, s stdio) error {
	fs := newFlags("authorize", "[--config FILE] [--credential NAME]", s.out)
	path := fs.String("config", defaultConfig, "config file")
	name := fs.String("credential", "", "the credential to authorize (its configured name); may be left out when there is only one")
	if err := parseFlags(fs, args); err != nil {
		return helpOr(fs, err)
	}
	cfg, err := loadConfig(*path, s)
	if err != nil {
		return err
	}
	if *name == "" {
		if len(cfg.Credentials) != 1 {
			return usagef("authorize: --credential is required with %d credentials in %s (%s)", len(cfg.Credentials), *path, strings.Join(credentialNames(cfg), ", "))
		}
		*name = cfg.Credentials[0].Name
	}
	cred, ok := cfg.Credential(*name)
	if !ok {
		return usagef("authorize: no credential named %q in %s", *name, *path)
	}
	app := appFor(cfg, *cred)
	store := &lazyAuthorizer{cfg: cfg, log: newLogger(cfg.Log, s.err)}
	defer store.Close()
	return setup.Terminal(ctx, setup.TerminalOptions{
		Credential: cred.Name,
		App:        app,
		Exchanger:  &tiktok.Client{HTTP: tiktokHTTPClient(cfg.Upstream.Timeout)},
		Tokens:     store,
		In:         s.in,
		Out:        s.out,
		AdminURL:   listenURL(cfg.AdminListen),
		AdminToken: cfg.AdminToken,
		HTTPClient: localHTTPClient(),
	})
}

// credentialNames lists the configured credentials' names in config order.
func credentialNames(cfg *config.Config) []string {
	names := make([]string, len(cfg.Credentials))
	for i, c := range cfg.Credentials {
		names[i] = c.Name
	}
	return names
}

// listenURL is the http:// URL of a configured listen address, for the
// commands that talk to a running serve.
func listenURL(addr string) string { return "http://" + dialable(addr) }

// dialable turns a listen address into one a client can dial: a wildcard
// host becomes 127.0.0.1.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// lazyAuthorizer opens the store only when the terminal flow must store the
// grant itself, so a running serve (which owns the store and completes the
// flow through its admin listener) is never raced by a second writer.
type lazyAuthorizer struct {
	cfg     *config.Config
	log     *slog.Logger
	once    sync.Once
	store   tokens.Store
	manager *tokens.Manager
	err     error
}

func (l *lazyAuthorizer) Authorize(ctx context.Context, name string, g *tiktok.Grant) (tokens.Status, error) {
	l.once.Do(func() {
		// Authorize stores a grant and refreshes nothing: no lease needed.
		if l.store, _, l.err = openStore(l.cfg); l.err != nil {
			return
		}
		l.manager, l.err = tokens.NewManager(ctx, l.store, managerCredentials(l.cfg),
			&tiktok.Client{HTTP: tiktokHTTPClient(l.cfg.Upstream.Timeout)},
			tokens.Options{RefreshBefore: l.cfg.Tokens.RefreshBefore, Logger: l.log})
	})
	if l.err != nil {
		return tokens.Status{}, l.err
	}
	return l.manager.Authorize(ctx, name, g)
}

func (l *lazyAuthorizer) Close() error {
	var errs []error
	if l.manager != nil {
		errs = append(errs, l.manager.Close())
	}
	if l.store != nil {
		errs = append(errs, l.store.Close())
	}
	return errors.Join(errs...)
}

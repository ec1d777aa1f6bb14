package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktoksim"
)

const defaultConfig = "./config.yaml"

// loadConfig loads the config; a content problem is printed one per line
// on stderr and returned as errReported.
func loadConfig(path string, s stdio) (*config.Config, error) {
	return loadConfigWith(path, config.LoadOptions{}, s)
}

// loadConfigWith is loadConfig with opts.
func loadConfigWith(path string, opts config.LoadOptions, s stdio) (*config.Config, error) {
	cfg, err := config.LoadWith(path, opts)
	var ve *config.ValidationError
	if errors.As(err, &ve) {
		fmt.Fprintln(s.err, ve.Error())
		return nil, errReported
	}
	return cfg, err
}

func runCheck(_ context.Context, args []string, s stdio) error {
	fs := newFlags("check", "[--config FILE]", s.out)
	path := fs.String("config", defaultConfig, "config file to validate")
	if err := parseFlags(fs, args); err != nil {
		return helpOr(fs, err)
	}
	cfg, err := loadConfig(*path, s)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "config OK: %s\n", plural(len(cfg.Credentials), "credential"))
	return nil
}

// plural renders a count with its noun: "1 credential", "2 credentials".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func runSimulate(ctx context.Context, args []string, s stdio) error {
	fs := newFlags("simulate", "[--listen ADDR]", s.out)
	addr := fs.String("listen", "127.0.0.1:9090", "address the simulator listens on")
	accessTTL := fs.Duration("access-ttl", 24*time.Hour, "access token lifetime; 0 gives long-lived tokens without refresh")
	refreshTTL := fs.Duration("refresh-ttl", 365*24*time.Hour, "refresh token lifetime")
	if err := parseFlags(fs, args); err != nil {
		return helpOr(fs, err)
	}
	if *accessTTL == 0 {
		*accessTTL = tiktoksim.NoExpiry
	}
	return tiktoksim.Run(ctx, *addr, tiktoksim.Options{AccessTTL: *accessTTL, RefreshTTL: *refreshTTL}, s.out)
}

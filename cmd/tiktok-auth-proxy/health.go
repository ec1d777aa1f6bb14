package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// defaultReadyzURL is what healthcheck asks when there is no config to
// name the admin listener: the default admin_listen.
const defaultReadyzURL = "http://" + config.DefaultAdminListen + "/readyz"

// runHealthcheck exits 0 when the running proxy's /readyz answers 200, else
// 1: the container HEALTHCHECK of an image that has no shell or curl.
func runHealthcheck(ctx context.Context, args []string, s stdio) error {
	flags := newFlags("healthcheck", "[--url URL] [--config FILE]", s.out)
	target := flags.String("url", "", "the /readyz URL to ask (default: from the config's admin_listen, else "+defaultReadyzURL+")")
	path := flags.String("config", defaultConfig, "config whose admin_listen gives the default URL; a missing default file means "+defaultReadyzURL)
	timeout := flags.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	if err := parseFlags(flags, args); err != nil {
		return helpOr(flags, err)
	}
	if *target == "" {
		u, err := readyzURL(*path, isSet(flags, "config"), s)
		if err != nil {
			return err
		}
		*target = u
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
	if err != nil {
		return usagef("healthcheck: --url: %v", err)
	}
	resp, err := localHTTPClient().Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered HTTP %d", *target, resp.StatusCode)
	}
	fmt.Fprintf(s.out, "ready: %s\n", *target)
	return nil
}

// readyzURL is the /readyz URL of the admin listener the config at path
// names. A default path that does not exist gives defaultReadyzURL; one
// given explicitly must exist.
func readyzURL(path string, explicit bool, s stdio) (string, error) {
	if _, err := os.Stat(path); !explicit && errors.Is(err, fs.ErrNotExist) {
		return defaultReadyzURL, nil
	}
	cfg, err := loadConfigWith(path, config.LoadOptions{WithoutCallerSecrets: true}, s)
	if err != nil {
		return "", err
	}
	return listenURL(cfg.AdminListen) + "/readyz", nil
}

// isSet says whether the flag name was given on the command line.
func isSet(flags *flag.FlagSet, name string) bool {
	set := false
	flags.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// localHTTPClient is the client for the proxy's own admin listener; it
// never follows the environment's proxy variables, which would send a
// request for 127.0.0.1 elsewhere.
func localHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	return &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

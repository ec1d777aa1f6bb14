package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/setup"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

// defaultWarnBefore is how close a refresh token's expiry makes status
// exit 1: two weeks leaves an operator time to re-authorize.
const defaultWarnBefore = 14 * 24 * time.Hour

// serverProbeTimeout bounds status's question to a running serve; past it
// the store is read instead.
const serverProbeTimeout = 3 * time.Second

// runStatus prints every credential's state and exits 1 when one needs an
// operator, so cron and Nagios-style checks can run it as it is.
func runStatus(ctx context.Context, args []string, s stdio) error {
	flags := newFlags("status", "[--config FILE] [--json] [--warn-before DURATION]", s.out)
	path := flags.String("config", defaultConfig, "config file")
	asJSON := flags.Bool("json", false, "print JSON for scripts instead of a table")
	warn := daysFlag(defaultWarnBefore)
	flags.Var(&warn, "warn-before", "exit 1 when a refresh token expires within this long (Go duration, or days such as 14d)")
	if err := parseFlags(flags, args); err != nil {
		return helpOr(flags, err)
	}
	// Neither the running server nor the store needs the app secrets,
	// which a monitoring host may not have.
	cfg, err := loadConfigWith(*path, config.LoadOptions{WithoutCallerSecrets: true}, s)
	if err != nil {
		return err
	}
	st, source, err := serverStatuses(ctx, cfg)
	if errors.Is(err, errNoServer) {
		st, err = storeStatuses(ctx, cfg)
		source = statusSource{Kind: sourceStore, Location: storeName(cfg)}
	}
	if err != nil {
		return err
	}
	now := time.Now()
	statuses := make([]tokens.Status, len(st))
	for i, c := range st {
		statuses[i] = c.Status
	}
	if *asJSON {
		out := make([]sourcedStatus, len(st))
		for i, c := range st {
			out[i] = sourcedStatus{credentialStatus: c, Source: source}
		}
		enc := json.NewEncoder(s.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(s.out, "source: %s\n", source)
		if err := tokens.FormatStatusTable(s.out, statuses, now); err != nil {
			return err
		}
		fmt.Fprintln(s.out)
		if err := formatRouting(s.out, st); err != nil {
			return err
		}
	}
	if problems := needsAttention(statuses, now, time.Duration(warn)); len(problems) > 0 {
		fmt.Fprintf(s.err, "tiktok-auth-proxy: status: %s\n", strings.Join(problems, "; "))
		return errReported
	}
	return nil
}

// credentialStatus is one credential as status shows it: the token store's
// Status, and how requests are routed to it, in /api/credentials' names.
type credentialStatus struct {
	tokens.Status
	// Default marks the credential a request naming no credential and no
	// known advertiser uses.
	Default bool `json:"default"`
	// Routes are the advertisers routed to it and where each comes from.
	Routes []setup.AdvertiserRoute `json:"advertiser_routes"`
}

// Kinds of statusSource.
const (
	sourceServer = "server"
	sourceStore  = "store"
)

// statusSource is where status read its answer: the running serve's admin
// listener (Kind sourceServer, Location its URL), or the store itself (Kind
// sourceStore, Location the token file's path or redis://ADDR/DB).
type statusSource struct {
	Kind     string `json:"kind"`
	Location string `json:"location"`
}

// String is the source as the table's first line names it.
func (s statusSource) String() string {
	if s.Kind == sourceServer {
		return "running server at " + s.Location
	}
	return "store " + s.Location
}

// sourcedStatus is one element of status --json: the credential and where
// its state was read. The source is repeated on each element so the output
// stays the list of credentials that scripts iterate over.
type sourcedStatus struct {
	credentialStatus
	Source statusSource `json:"source"`
}

// formatRouting writes which credential is the default and how many of
// each credential's advertisers come from config, the grant and TikTok's
// listing: counts, which stay readable with hundreds of advertisers
// (--json lists them).
func formatRouting(w io.Writer, st []credentialStatus) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CREDENTIAL\tDEFAULT\tADVERTISERS FROM CONFIG\tFROM GRANT\tFROM LISTING")
	hasDefault := false
	for _, c := range st {
		n := map[string]int{}
		for _, r := range c.Routes {
			for _, src := range r.Sources {
				n[src]++
			}
		}
		def := "no"
		if c.Default {
			def, hasDefault = "yes", true
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", c.Name, def,
			n[setup.SourceConfig], n[setup.SourceGrant], n[setup.SourceListing])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !hasDefault {
		_, err := fmt.Fprintln(w, "no default credential: a request naming no credential and no known advertiser gets 90001")
		return err
	}
	return nil
}

// needsAttention names every credential an operator must act on: not
// authorized, marked for re-authorization, or whose refresh token expires
// within warn.
func needsAttention(st []tokens.Status, now time.Time, warn time.Duration) []string {
	var out []string
	for _, s := range st {
		switch {
		case !s.Authorized:
			out = append(out, s.Name+": not authorized")
		case s.ReauthRequired:
			out = append(out, s.Name+": needs re-authorization")
		case s.Refreshable && !s.RefreshExpiresAt.IsZero() && s.RefreshExpiresAt.Sub(now) < warn:
			left := s.RefreshExpiresAt.Sub(now)
			if left <= 0 {
				out = append(out, s.Name+": refresh token expired")
			} else {
				out = append(out, fmt.Sprintf("%s: refresh token expires in %s (within %s)", s.Name, tokens.HumanDuration(left), tokens.HumanDuration(warn)))
			}
		}
	}
	return out
}

// errNoServer: nothing answers on the admin listener, so the store is the
// source of truth.
var errNoServer = errors.New("no running server")

// serverStatuses asks a running serve, through its admin listener's
// /api/credentials, for its view: the live one, with refresh failures and
// re-authorizations the store may not show yet. errNoServer when nothing
// answers there.
func serverStatuses(ctx context.Context, cfg *config.Config) ([]credentialStatus, statusSource, error) {
	base := listenURL(cfg.AdminListen)
	ctx, cancel := context.WithTimeout(ctx, serverProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/credentials", nil)
	if err != nil {
		return nil, statusSource{}, fmt.Errorf("status: %w", err)
	}
	if cfg.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.AdminToken.Value())
	}
	resp, err := localHTTPClient().Do(req)
	if err != nil {
		return nil, statusSource{}, errNoServer
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Something answers but will not tell: saying so beats showing a
		// store that serve may have moved past.
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized {
			hint = "; check admin_token"
		}
		return nil, statusSource{}, fmt.Errorf("status: the admin listener at %s answered /api/credentials with HTTP %d%s", base, resp.StatusCode, hint)
	}
	var st []credentialStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st); err != nil {
		return nil, statusSource{}, fmt.Errorf("status: the admin listener at %s: /api/credentials: %w", base, err)
	}
	return st, statusSource{Kind: sourceServer, Location: base}, nil
}

// storeStatuses reads each configured credential from the store, and its
// routing from the config and the store, as serve would route. The store
// is only read, so this is safe while serve runs.
func storeStatuses(ctx context.Context, cfg *config.Config) ([]credentialStatus, error) {
	store, _, err := openStore(cfg)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	statuses := make([]tokens.Status, 0, len(cfg.Credentials))
	granted := make(map[string][]string, len(cfg.Credentials))
	for _, c := range cfg.Credentials {
		rec, err := store.Get(ctx, c.Name)
		if errors.Is(err, tokens.ErrNotFound) {
			rec = nil
		} else if err != nil {
			return nil, fmt.Errorf("read store: %w", err)
		}
		s := tokens.StatusFromRecord(c.Name, c.Kind, rec)
		granted[c.Name] = tokens.AdvertiserIDs(s.Advertisers)
		statuses = append(statuses, s)
	}
	_, conflicts := tokens.Route(managerCredentials(cfg), granted)
	st := make([]credentialStatus, 0, len(cfg.Credentials))
	for i, c := range cfg.Credentials {
		s := statuses[i]
		s.AdvertiserConflicts = tokens.ConflictsOf(conflicts, c.Name)
		st = append(st, credentialStatus{Status: s, Default: c.Default,
			Routes: setup.AdvertiserRoutes(c.Name, c.AdvertiserIDs, s.Advertisers, s.AdvertiserConflicts)})
	}
	return st, nil
}

// storeName names the configured store for the source line: the file's
// path, or Redis as the start line names it (address and database).
func storeName(cfg *config.Config) string {
	if cfg.Store.Backend == "file" {
		return cfg.Store.Path
	}
	return storeLocation(cfg.Store)
}

// daysFlag is a duration flag that also takes whole days ("14d"), the unit
// refresh-token lifetimes are thought of in.
type daysFlag time.Duration

func (d *daysFlag) String() string { return tokens.HumanDuration(time.Duration(*d)) }

func (d *daysFlag) Set(v string) error {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return fmt.Errorf("%q is not a number of days", v)
		}
		*d = daysFlag(time.Duration(days) * 24 * time.Hour)
		return nil
	}
	dur, err := time.ParseDuration(v)
	if err != nil || dur < 0 {
		return fmt.Errorf("%q is not a duration such as 14d or 72h", v)
	}
	*d = daysFlag(dur)
	return nil
}

package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/jsonlog"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/internal/stopbudget"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/metrics"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/proxy"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/quota"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/setup"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/filestore"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/redisstore"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens/seal"
)

// app is the running program: both listeners, the token manager and the
// store. newApp opens the listeners so a bind error shows at start.
type app struct {
	cfg     *config.Config
	log     *slog.Logger
	store   tokens.Store
	manager *tokens.Manager
	// stopQuota ends the budgets' Redis heartbeats; nil before newQuota.
	stopQuota func()
	// stopWatch ends the store's change notifications (redis); nil
	// without them.
	stopWatch context.CancelFunc
	proxy     *http.Server
	admin     *http.Server
	setup     *setup.Admin
	proxyLn   net.Listener
	adminLn   net.Listener
	registry  *prometheus.Registry

	// forward and forwardLn serve forward_proxy; nil when it is off.
	forward   *http.Server
	forwardLn net.Listener

	// clients bounds the connections proxyLn and forwardLn hold together.
	clients *proxy.ClientBound

	// shutdownTimeout bounds the wait for in-flight requests once Run's
	// context ends; newApp sets stopbudget.Requests.
	shutdownTimeout time.Duration
	// handlers counts both listeners' running handlers; handlerGrace
	// (newApp sets stopbudget.HandlerGrace) bounds the wait for them past
	// shutdownTimeout.
	handlers     inFlight
	handlerGrace time.Duration
}

// inFlight counts running handlers. http.Server.Close closes connections
// but does not wait for their handlers, and one still running may yet
// write to the store (a token TikTok rejected, a grant being stored).
// Unlike a sync.WaitGroup it may be waited on while handlers still start.
type inFlight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil until waited on
}

// wrap counts h's calls while they run.
func (f *inFlight) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.begin()
		defer f.end()
		h.ServeHTTP(w, r)
	})
}

// begin counts one more running; end, called once for each begin, one less.
func (f *inFlight) begin() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
}

func (f *inFlight) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n--; f.n == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

// wait waits up to d for no handler to be running; it returns how many
// still are.
func (f *inFlight) wait(d time.Duration) int {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return 0
	}
	if f.idle == nil {
		f.idle = make(chan struct{})
	}
	idle := f.idle
	f.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// newLogger builds the slog logger of the log: config section. A duration
// (slog.Duration) reads as people write one in text, "duration=12.3ms",
// and in JSON as the number log pipelines compare and sum,
// "duration_seconds":0.0123 (package jsonlog, which writes the access
// log's lines without slog's general machinery).
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: textDuration}))
	}
	return slog.New(jsonlog.New(w, level))
}

// textDuration rounds a duration to three significant figures: 12.3ms,
// 29.6µs, 1.23s.
func textDuration(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindDuration {
		return a
	}
	d := a.Value.Duration()
	unit := time.Duration(1)
	for v := d.Abs(); v >= 1000*unit && unit < time.Hour; {
		unit *= 10
	}
	a.Value = slog.DurationValue(d.Round(unit))
	return a
}

// appFor resolves a credential's TikTok app: kind defaults for every OAuth
// URL, overridden by the credential's own oauth: and then the oauth: section.
func appFor(cfg *config.Config, c config.Credential) tiktok.App {
	ep := tiktok.DefaultEndpoints(cfg.Upstream.BaseURL, c.Kind)
	o := cfg.EndpointsFor(c)
	ep.AuthorizeURL = cmp.Or(o.AuthorizeURL, ep.AuthorizeURL)
	ep.TokenURL = cmp.Or(o.TokenURL, ep.TokenURL)
	ep.RefreshURL = cmp.Or(o.RefreshURL, ep.RefreshURL)
	return tiktok.App{
		Kind:        c.Kind,
		AppID:       c.AppID,
		Secret:      c.AppSecret.Value(),
		RedirectURL: cfg.OAuth.RedirectURL,
		Endpoints:   ep,
	}
}

func managerCredentials(cfg *config.Config) []tokens.Credential {
	out := make([]tokens.Credential, 0, len(cfg.Credentials))
	for _, c := range cfg.Credentials {
		out = append(out, tokens.Credential{Name: c.Name, App: appFor(cfg, c), AdvertiserIDs: c.AdvertiserIDs})
	}
	return out
}

// storeUpTimeout bounds the store ping behind each scrape of store_up, so a
// hung Redis shows as 0 rather than a scrape timeout.
const storeUpTimeout = time.Second

// openStore opens the configured token store and the Leaser its refreshes
// run under; opts apply to the file store. The file backend serves one
// process, so its leases live in memory; Redis shares them between replicas.
func openStore(cfg *config.Config, opts ...filestore.Option) (tokens.Store, tokens.Leaser, error) {
	key, err := cfg.Store.Key()
	if err != nil {
		return nil, nil, err
	}
	switch cfg.Store.Backend {
	case "file":
		st, err := filestore.Open(cfg.Store.Path, key, opts...)
		if err != nil {
			// Not st itself: a nil *Store in a non-nil Store interface
			// would be closed by the caller's cleanup.
			return nil, nil, err
		}
		return st, tokens.NewMemoryLeaser(nil), nil
	case "redis":
		r := cfg.Store.Redis
		ro := redisstore.Options{
			Address: r.Address, Username: r.Username, Password: r.Password.Value(), DB: r.DB,
			KeyPrefix: r.KeyPrefix, TLS: r.TLS,
		}
		if len(key) > 0 {
			if ro.Sealer, err = seal.New(key); err != nil {
				return nil, nil, err
			}
		}
		st, err := redisstore.Open(ro)
		if err != nil {
			return nil, nil, err
		}
		return st, st, nil
	default:
		return nil, nil, fmt.Errorf("store backend %q is not available in this version; use backend: file or redis", cfg.Store.Backend)
	}
}

// tiktokHTTPClient is the client for TikTok's OAuth endpoints; it never
// follows the environment's proxy variables, which may point at this proxy.
func tiktokHTTPClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	return &http.Client{Timeout: timeout, Transport: t}
}

func listen(what, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", what, err)
	}
	return ln, nil
}

// httpURL is the http:// URL of a listener's address, with a wildcard host
// shown as 127.0.0.1 so it can be opened.
func httpURL(addr net.Addr) string { return "http://" + dialable(addr.String()) }

// idleTimeout is how long a listener keeps an idle connection, and the
// forward proxy an idle tunnel.
const idleTimeout = 120 * time.Second

// newServer serves h; writeTimeout bounds writing each answer from its
// request's header on (0: no bound).
func newServer(h http.Handler, log *slog.Logger, writeTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// answerTimeout is the proxy and forward-proxy listeners' WriteTimeout:
// upstream.timeout already ends every proxied answer on TikTok's side, so
// this cuts only writes to a client that stopped reading, which would
// otherwise hold its handler and its slot of the client bound for as long
// as it kept the connection (proxy.WriteGrace).
func answerTimeout(cfg *config.Config) time.Duration {
	return cfg.Upstream.Timeout + proxy.WriteGrace
}

// newRegistry returns the registry /metrics serves, with Go and process
// collectors, and the project's metrics on it.
func newRegistry() (*prometheus.Registry, *metrics.Metrics) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, metrics.New(reg, version, runtime.Version())
}

// Run serves until ctx ends, then shuts down gracefully: stop accepting,
// finish in-flight requests (bounded), stop refreshing, flush the store.
// Requests still running past the bound are cut off; that is the bound
// working, not a failure, so Run still returns nil; a grant the store refused
// until stopbudget.Flush is, and Run returns the error naming it (exit 1).
func (a *app) Run(ctx context.Context) error {
	errc := make(chan error, 3)
	serve := func(s *http.Server, ln net.Listener) {
		if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}
	go serve(a.proxy, a.proxyLn)
	go serve(a.admin, a.adminLn)
	listeners := []any{"proxy", httpURL(a.proxyLn.Addr())}
	if a.forward != nil {
		go serve(a.forward, a.forwardLn)
		listeners = append(listeners, "forward_proxy", httpURL(a.forwardLn.Addr()))
	}
	a.manager.Start(ctx)
	a.log.Info("tiktok-auth-proxy serving", append(listeners, "admin", httpURL(a.adminLn.Addr()),
		"setup_page", a.setup.SetupURL(httpURL(a.adminLn.Addr())), "upstream", a.cfg.Upstream.BaseURL,
		"store", storeLocation(a.cfg.Store), "encryption", a.cfg.Store.EncryptionKey != "",
		slog.Group("credentials", a.credentialStates()...), "version", version)...)

	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutting down: finishing in-flight requests", "timeout", a.shutdownTimeout.String())
	case runErr = <-errc:
		a.log.Error("listener failed", "error", runErr)
	}
	a.shutdown()
	err := errors.Join(runErr, a.flush(), a.Close())
	if err == nil {
		a.log.Info("stopped")
	}
	return err
}

// storeLocation names where tokens are kept, for the start line: the file's
// path, or the Redis address and database.
func storeLocation(s config.Store) string {
	if s.Backend == "redis" {
		return fmt.Sprintf("redis://%s/%d", s.Redis.Address, s.Redis.DB)
	}
	return "file:" + s.Path
}

// credentialStates is each credential's state as the setup page names it,
// for the start line.
func (a *app) credentialStates() []any {
	var out []any
	for _, st := range a.manager.Statuses() {
		out = append(out, slog.String(st.Name, setup.State(st, "")))
	}
	return out
}

// shutdown stops both listeners at once and waits up to shutdownTimeout for
// their in-flight requests; connections still busy then are closed.
func (a *app) shutdown() {
	sctx, cancel := context.WithTimeout(context.Background(), a.shutdownTimeout)
	defer cancel()
	var proxyErr, adminErr, forwardErr error
	var wg sync.WaitGroup
	wg.Go(func() { proxyErr = a.proxy.Shutdown(sctx) })
	if a.forward != nil {
		wg.Go(func() { forwardErr = a.forward.Shutdown(sctx) })
	}
	wg.Go(func() {
		// Long-polls of the authorize command answer now instead of holding
		// Shutdown for up to their timeout.
		a.setup.Close()
		adminErr = a.admin.Shutdown(sctx)
	})
	wg.Wait()
	err := errors.Join(proxyErr, adminErr, forwardErr)
	if err == nil && a.forward != nil {
		// Requests inside forward-proxy tunnels run on hijacked
		// connections, which Shutdown does not wait for; they are counted
		// among the handlers.
		dl, _ := sctx.Deadline()
		if n := a.handlers.wait(time.Until(dl)); n > 0 {
			err = fmt.Errorf("%d requests inside forward-proxy tunnels still running", n)
		}
	}
	if err == nil {
		return
	}
	a.log.Warn("in-flight requests did not finish within the shutdown timeout; closing their connections",
		"timeout", a.shutdownTimeout.String(), "error", err)
	// Close only fails like Shutdown did (closing listeners); the
	// connections are closed whatever it returns.
	_ = a.proxy.Close()
	_ = a.admin.Close()
	if a.forward != nil {
		_ = a.forward.Close()
	}
	// Handlers whose connection was closed end soon (their context is
	// cancelled), but only once they return may the store close.
	if n := a.handlers.wait(a.handlerGrace); n > 0 {
		a.log.Warn("handlers still running after their connections were closed; stopping anyway",
			"handlers", n, "waited", a.handlerGrace.String())
	}
}

// flush writes, within stopbudget.Flush, every grant the store refused so far;
// its error names each credential whose grant is lost with this process.
func (a *app) flush() error {
	ctx, cancel := context.WithTimeout(context.Background(), stopbudget.Flush)
	defer cancel()
	err := a.manager.Flush(ctx)
	if err != nil {
		a.log.Error("grants the store refused are lost on exit", "credentials", a.manager.Unpersisted(), "error", err.Error())
	}
	return err
}

// Close stops the token manager, closes the store and ends the budgets'
// heartbeats.
func (a *app) Close() error {
	var errs []error
	if a.manager != nil {
		errs = append(errs, a.manager.Close())
	}
	// The heartbeats and the watch use the store's connection: they end
	// first.
	if a.stopQuota != nil {
		a.stopQuota()
	}
	if a.stopWatch != nil {
		a.stopWatch()
	}
	if a.store != nil {
		errs = append(errs, a.store.Close())
	}
	return errors.Join(errs...)
}

// newApp builds the whole program from a loaded config and opens both
// listeners. On error everything opened so far is closed.
// access, when not nil, is the logger of the access log (a line per
// request), which serve batches; nil writes it through log.
func newApp(ctx context.Context, cfg *config.Config, log, access *slog.Logger) (_ *app, err error) {
	a := &app{cfg: cfg, log: log, shutdownTimeout: stopbudget.Requests, handlerGrace: stopbudget.HandlerGrace}
	defer func() {
		if err != nil {
			a.closeListeners()
			a.Close()
		}
	}()
	if a.proxyLn, err = listen("proxy", cfg.Listen); err != nil {
		return nil, err
	}
	// One bound for every client listener: the process's descriptors
	// and memory are computed for it once.
	a.clients = proxy.NewClientBound(cfg.ForwardProxy.Listen != "")
	a.proxyLn = a.clients.Listen(a.proxyLn)
	if a.adminLn, err = listen("admin", cfg.AdminListen); err != nil {
		return nil, err
	}
	if cfg.ForwardProxy.Listen != "" {
		if a.forwardLn, err = listen("forward proxy", cfg.ForwardProxy.Listen); err != nil {
			return nil, err
		}
		// Each tunnel holds a client connection as long as a reverse
		// listener's connection does: a burst of them counts against the
		// same bound, or it would take the descriptors TikTok's
		// connections need.
		a.forwardLn = a.clients.Listen(a.forwardLn)
	}
	if cfg.Store.Backend == "redis" {
		redisstore.SetLogger(log)
	}
	var leaser tokens.Leaser
	if a.store, leaser, err = openStore(cfg, filestore.WithLogger(log)); err != nil {
		return nil, err
	}
	reg, m := newRegistry()
	a.registry = reg
	metrics.RegisterClientBound(reg, a.clients)
	store := a.store
	metrics.RegisterStoreUp(reg, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), storeUpTimeout)
		defer cancel()
		return store.Ping(ctx) == nil
	})
	for _, c := range cfg.Credentials {
		m.InitCredential(c.Name)
	}
	// Other replicas' refreshes and grants reach this one within
	// milliseconds by Redis pub/sub (polling when that is lost), rather
	// than when a request or the advertiser interval re-reads the store.
	var changes <-chan string
	if rs, ok := a.store.(*redisstore.Store); ok {
		var watchCtx context.Context
		watchCtx, a.stopWatch = context.WithCancel(context.Background())
		changes = rs.Watch(watchCtx)
	}
	api := &tiktok.Client{HTTP: tiktokHTTPClient(cfg.Upstream.Timeout)}
	a.manager, err = tokens.NewManager(ctx, a.store, managerCredentials(cfg), api, tokens.Options{
		RefreshBefore: cfg.Tokens.RefreshBefore,
		Leaser:        leaser,
		Changes:       changes,
		Metrics:       m,
		Logger:        log,
	})
	if err != nil {
		return nil, err
	}
	adminURL, proxyURL := httpURL(a.adminLn.Addr()), httpURL(a.proxyLn.Addr())
	limiter, stopQuota := newQuota(cfg, a.store, m, log)
	a.stopQuota = stopQuota
	px, err := proxy.New(proxy.Options{Config: cfg, Tokens: a.manager, Metrics: m, Logger: log, AccessLog: access, AdminURL: adminURL, Quota: limiter})
	if err != nil {
		return nil, err
	}
	creds := make([]setup.Credential, 0, len(cfg.Credentials))
	for _, c := range cfg.Credentials {
		creds = append(creds, setup.Credential{Name: c.Name, Description: c.Description, Kind: c.Kind, App: appFor(cfg, c),
			AdvertiserIDs: c.AdvertiserIDs, Default: c.Default})
	}
	admin, err := setup.New(setup.Options{
		Credentials: creds,
		Tokens:      a.manager,
		Exchanger:   api,
		AdminToken:  cfg.AdminToken,
		Loopback:    config.IsLoopback(cfg.AdminListen),
		Metrics:     promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		ProxyURL:    proxyURL,
		Breaker: func(name string) setup.BreakerInfo {
			b := px.Breaker(name)
			return setup.BreakerInfo{State: b.State, Until: b.Until, LastError: b.LastError}
		},
		Pauses: func() []string { return pauseLines(px.Core().Pauses()) },
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	a.proxy, a.admin, a.setup = newServer(a.handlers.wrap(px), log, answerTimeout(cfg)), newServer(a.handlers.wrap(admin), log, 0), admin
	if a.forwardLn != nil {
		fwd, err := newForward(cfg, px.Core(), &a.handlers, log)
		if err != nil {
			return nil, err
		}
		a.forward = newServer(fwd, log, answerTimeout(cfg))
		// Shutdown closes idle connections but not the tunnels goproxy
		// took over: idle ones close now, busy ones once answered.
		a.forward.RegisterOnShutdown(fwd.CloseTunnels)
	}
	return a, nil
}

// pauseLines are the quota's pauses as the setup page shows them.
func pauseLines(pauses []quota.Pause) []string {
	lines := make([]string, len(pauses))
	for i, p := range pauses {
		lines[i] = p.String()
	}
	return lines
}

func (a *app) closeListeners() {
	for _, ln := range []net.Listener{a.proxyLn, a.adminLn, a.forwardLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

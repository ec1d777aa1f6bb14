package setup

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tiktok"
	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

var (
	errStateMismatch = clientError("That URL belongs to another authorization (its state does not match); use the URL of this one.")
	errPastedNoState = clientError("The pasted URL has no state parameter, so it cannot be checked against this authorization; paste the whole URL your browser was sent to, or just the code.")
)

// ParseRedirect reads what an operator pastes after consenting: the whole
// URL the browser was redirected to (…/oauth/callback?auth_code=…&state=…),
// its query string alone, or the bare code. state is "" only for a bare
// code: a URL or query string without state is refused, since TikTok's
// redirect always carries it and the caller must check it. TikTok's error
// parameter in the URL is returned as an error.
func ParseRedirect(line string) (code, state string, err error) {
	line = strings.TrimSpace(line)
	if line == "" {
		return "", "", clientError("Nothing was pasted.")
	}
	query := ""
	switch {
	case strings.Contains(line, "://") || strings.HasPrefix(line, "/") || strings.Contains(line, "?"):
		u, err := url.Parse(line)
		if err != nil {
			return "", "", clientError("The pasted text is not a URL or a code.")
		}
		query = u.RawQuery
	case strings.Contains(line, "="):
		query = line
	default:
		if strings.ContainsAny(line, " \t&") {
			return "", "", clientError("The pasted text is not a URL or a code.")
		}
		return line, "", nil
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", "", clientError("The pasted URL has a malformed query string.")
	}
	if e := q.Get("error"); e != "" {
		return "", "", deniedError(clip(e, 64), clip(q.Get("error_description"), 300))
	}
	code = codeParam(q)
	if code == "" {
		return "", "", errMissingCode
	}
	if state = q.Get("state"); state == "" {
		return "", "", errPastedNoState
	}
	return code, state, nil
}

// Authorizer stores a grant; *tokens.Manager implements it.
type Authorizer interface {
	Authorize(ctx context.Context, name string, g *tiktok.Grant) (tokens.Status, error)
}

// TerminalOptions configure Terminal.
type TerminalOptions struct {
	// Credential is the configured name to authorize.
	Credential string
	// App is the credential's resolved TikTok app; Exchanger and Tokens are
	// used only when no admin listener answers.
	App       tiktok.App
	Exchanger Exchanger
	Tokens    Authorizer
	// In supplies the pasted redirect URL or code; Out receives the
	// instructions and the result. A goroutine may stay blocked reading In
	// after Terminal returns through the admin listener, until In is closed.
	In  io.Reader
	Out io.Writer
	// AdminURL is the running admin listener (e.g. http://127.0.0.1:8081);
	// "" skips it. AdminToken is sent as its bearer token when set.
	AdminURL   string
	AdminToken config.Secret
	// HTTPClient talks to the admin listener; nil means a plain client
	// (each call carries its own deadline). Its CheckRedirect is not used:
	// no call follows a redirect.
	HTTPClient *http.Client
}

// errAdminUnreachable means no admin listener answered: Terminal then
// completes by itself.
var errAdminUnreachable = errors.New("setup: admin listener unreachable")

// Terminal runs the authorize command. With an admin listener answering at
// AdminURL it mints the state there and completes from whichever comes
// first: TikTok's redirect reaching the listener's callback, or a line
// pasted on In. Otherwise it prints the consent URL, reads the redirected
// URL or code from In, exchanges it and stores the grant through Tokens.
// Either way it prints the granted advertisers and scopes on Out.
func Terminal(ctx context.Context, opts TerminalOptions) error {
	if opts.In == nil || opts.Out == nil {
		return errors.New("setup: TerminalOptions.In and Out are required")
	}
	if opts.AdminURL != "" {
		err := terminalViaAdmin(ctx, opts)
		if !errors.Is(err, errAdminUnreachable) {
			return err
		}
		fmt.Fprintf(opts.Out, "No admin listener answers at %s; completing in this terminal.\n\n", opts.AdminURL)
	}
	return terminalLocal(ctx, opts)
}

func terminalLocal(ctx context.Context, opts TerminalOptions) error {
	if opts.Exchanger == nil || opts.Tokens == nil {
		return errors.New("setup: TerminalOptions.Exchanger and Tokens are required without an admin listener")
	}
	state, err := randomToken()
	if err != nil {
		return err
	}
	fmt.Fprintf(opts.Out, "Open this URL in a browser and approve access for credential %q:\n\n  %s\n\n", opts.Credential, opts.Exchanger.AuthCodeURL(opts.App, state))
	fmt.Fprintf(opts.Out, "Your browser is then sent to the redirect URL. Paste that whole URL (or just the code) here and press Enter:\n")
	lines := readLines(opts.In)
	for {
		var line string
		select {
		case <-ctx.Done():
			return fmt.Errorf("setup: authorize: %w", ctx.Err())
		case l, ok := <-lines:
			if !ok {
				return errors.New("setup: authorize: input ended before a redirect URL or code was pasted")
			}
			line = l
		}
		code, gotState, err := ParseRedirect(line)
		if err == nil && gotState != "" && gotState != state {
			err = errStateMismatch
		}
		if err != nil {
			fmt.Fprintf(opts.Out, "%s Try again:\n", flowMessage(err))
			continue
		}
		g, err := opts.Exchanger.Exchange(ctx, opts.App, code)
		if err != nil {
			return fmt.Errorf("setup: authorize: %s", exchangeError(err, code, opts.App.Secret).Message)
		}
		st, err := opts.Tokens.Authorize(ctx, opts.Credential, g)
		if err != nil {
			return fmt.Errorf("setup: authorize: storing the grant: %w", err)
		}
		printResult(opts.Out, opts.Credential, st)
		return nil
	}
}

// readLines delivers In's non-empty lines; the channel closes at the end of
// In. Its goroutine ends only when In does.
func readLines(in io.Reader) <-chan string {
	out := make(chan string)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" {
				out <- l
			}
		}
	}()
	return out
}

func printResult(w io.Writer, name string, st tokens.Status) {
	fmt.Fprintf(w, "\nCredential %q authorized.\n", name)
	if len(st.Advertisers) == 0 {
		fmt.Fprintf(w, "Advertisers: none granted\n")
	} else {
		fmt.Fprintf(w, "Advertisers:\n")
		for _, ad := range st.Advertisers {
			if ad.Name != "" {
				fmt.Fprintf(w, "  %s  %s\n", ad.ID, ad.Name)
			} else {
				fmt.Fprintf(w, "  %s\n", ad.ID)
			}
		}
	}
	if len(st.Scopes) == 0 {
		fmt.Fprintf(w, "Scopes: none reported\n")
	} else {
		fmt.Fprintf(w, "Scopes: %s\n", strings.Join(st.Scopes, ", "))
	}
}

// adminClient calls the admin listener's authorize API.
type adminClient struct {
	base  string
	token config.Secret
	http  *http.Client
}

// call sends one request and decodes a JSON answer into out. A transport
// failure wraps errAdminUnreachable; a redirect is an error naming its
// target without the query (the client never follows one: on the same host
// it would resend the admin token); a non-2xx answer without JSON leaves
// out untouched and only its status tells.
func (c *adminClient) call(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("setup: encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, fmt.Errorf("setup: admin listener request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token.Value())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errAdminUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 3 {
		return resp.StatusCode, fmt.Errorf("setup: admin listener at %s answered HTTP %d redirecting to %s: not followed",
			c.base, resp.StatusCode, redirectTarget(resp))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil && resp.StatusCode/100 == 2 {
		return resp.StatusCode, fmt.Errorf("setup: admin listener answered HTTP %d without JSON: %w", resp.StatusCode, err)
	}
	return resp.StatusCode, nil
}

// redirectTarget is a redirect's Location resolved against the request,
// without query or fragment (they may carry anything).
func redirectTarget(resp *http.Response) string {
	loc, err := resp.Location()
	if err != nil {
		return "an invalid Location"
	}
	loc.RawQuery, loc.Fragment, loc.RawFragment, loc.ForceQuery = "", "", "", false
	return loc.Redacted()
}

func terminalViaAdmin(ctx context.Context, opts TerminalOptions) error {
	hc := http.Client{}
	if opts.HTTPClient != nil {
		hc = *opts.HTTPClient
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &adminClient{base: strings.TrimSuffix(opts.AdminURL, "/"), token: opts.AdminToken, http: &hc}
	var begin struct {
		BeginResponse
		Error string `json:"error"`
	}
	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	status, err := c.call(bctx, http.MethodPost, "/api/authorize/"+url.PathEscape(opts.Credential), struct{}{}, &begin)
	cancel()
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		msg := begin.Error
		if msg == "" {
			msg = http.StatusText(status)
		}
		return fmt.Errorf("setup: admin listener at %s refused to start the authorization: HTTP %d: %s", c.base, status, msg)
	}
	fmt.Fprintf(opts.Out, "Open this URL in a browser and approve access for credential %q:\n\n  %s\n\n", opts.Credential, begin.AuthorizeURL)
	fmt.Fprintf(opts.Out, "This command finishes by itself once TikTok redirects your browser to the admin listener.\n"+
		"If the redirect cannot reach it, paste the URL your browser was sent to (or just the code) and press Enter.\n")

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	outcomes := make(chan WaitResponse, 2)
	go c.waitLoop(ctx, begin.State, begin.ExpiresAt, outcomes)
	go c.pasteLoop(ctx, opts.In, opts.Out, begin.State, outcomes)
	var o WaitResponse
	select {
	case <-ctx.Done():
		return fmt.Errorf("setup: authorize: %w", ctx.Err())
	case o = <-outcomes:
	}
	if o.Result == nil {
		return fmt.Errorf("setup: authorize: %s", o.Error)
	}
	printResult(opts.Out, opts.Credential, o.Result.Status)
	return nil
}

// maxWaitPolls bounds the long-poll loop: StateTTL at one poll per 30s
// needs 20; the margin covers listeners that answer sooner.
const maxWaitPolls = 200

func (c *adminClient) waitLoop(ctx context.Context, state string, expires time.Time, out chan<- WaitResponse) {
	for range maxWaitPolls {
		if ctx.Err() != nil {
			return
		}
		var w WaitResponse
		pctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		status, err := c.call(pctx, http.MethodGet, "/api/authorize/"+url.PathEscape(state)+"/wait", nil, &w)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !errors.Is(err, errAdminUnreachable):
			out <- WaitResponse{Done: true, Error: err.Error()}
			return
		case err != nil && !expires.IsZero() && time.Now().After(expires):
			out <- WaitResponse{Done: true, Error: "the authorization expired before it was completed"}
			return
		case err != nil:
			// Unreachable: the listener may be restarting; poll again
			// after a pause.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		case status == http.StatusNotFound:
			out <- WaitResponse{Done: true, Error: "the admin listener no longer knows this authorization (expired, or the proxy restarted)"}
			return
		case w.Done:
			out <- w
			return
		}
	}
	out <- WaitResponse{Done: true, Error: "gave up waiting for the callback"}
}

func (c *adminClient) pasteLoop(ctx context.Context, in io.Reader, echo io.Writer, state string, out chan<- WaitResponse) {
	lines := readLines(in)
	for {
		var line string
		select {
		case <-ctx.Done():
			return
		case l, ok := <-lines:
			if !ok {
				return
			}
			line = l
		}
		code, gotState, err := ParseRedirect(line)
		if err == nil && gotState != "" && gotState != state {
			err = errStateMismatch
		}
		if err != nil {
			fmt.Fprintf(echo, "%s Try again:\n", flowMessage(err))
			continue
		}
		var w WaitResponse
		status, err := c.call(ctx, http.MethodPost, "/api/authorize/"+url.PathEscape(state)+"/complete", CompleteRequest{Code: code}, &w)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			out <- WaitResponse{Done: true, Error: err.Error()}
		case w.Result == nil && w.Error == "":
			out <- WaitResponse{Done: true, Error: fmt.Sprintf("the admin listener answered HTTP %d", status)}
		default:
			out <- w
		}
		return
	}
}

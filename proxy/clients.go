package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/config"
)

// client is a configured inbound caller. Only its token's hash is kept, so
// comparisons run in constant time whatever the token lengths.
type client struct {
	name  string
	hash  [sha256.Size]byte
	creds map[string]bool
}

func newClient(c config.Client) client {
	cl := client{name: c.Name, hash: sha256.Sum256([]byte(c.Token.Value())), creds: map[string]bool{}}
	for _, n := range c.Credentials {
		cl.creds[n] = true
	}
	return cl
}

// authenticate checks Proxy-Authorization (Bearer TOKEN, or Basic with the
// token as password) when clients are configured. It returns nil, nil when
// they are not.
func (c *Core) authenticate(r *http.Request) (*client, *Error) {
	if len(c.clients) == 0 {
		return nil, nil
	}
	h := strings.TrimSpace(r.Header.Get(headerProxyAuth))
	if h == "" {
		return nil, newError(CodeClientAuth, http.StatusUnauthorized,
			"this proxy requires client authentication: send Proxy-Authorization: Bearer <your client token>")
	}
	token, ok := presentedToken(h)
	if !ok {
		return nil, newError(CodeClientAuth, http.StatusUnauthorized,
			"Proxy-Authorization must be \"Bearer <client token>\" or Basic with the client token as password")
	}
	sum := sha256.Sum256([]byte(token))
	var found *client
	// Every client is compared so the time taken says nothing about which matched.
	for i := range c.clients {
		if subtle.ConstantTimeCompare(sum[:], c.clients[i].hash[:]) == 1 {
			found = &c.clients[i]
		}
	}
	if found == nil {
		return nil, newError(CodeClientAuth, http.StatusUnauthorized,
			"the client token in Proxy-Authorization is not valid")
	}
	return found, nil
}

func presentedToken(h string) (string, bool) {
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok {
		return "", false
	}
	rest = strings.TrimSpace(rest)
	switch strings.ToLower(scheme) {
	case "bearer":
		return rest, rest != ""
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", false
		}
		_, pass, ok := strings.Cut(string(raw), ":")
		return pass, ok && pass != ""
	}
	return "", false
}

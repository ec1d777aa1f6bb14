package tiktok

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// decodeGrant reads data of an exchange or refresh answer, for both kinds.
// Only the access token is required. A refresh has already rotated the
// refresh token by the time its answer arrives, so refusing an answer over
// one odd field would lose the credential: every other field whose shape is
// unusable is left out and named in Grant.Dropped, and the rest is kept.
func decodeGrant(data json.RawMessage) (*Grant, error) {
	var fields map[string]json.RawMessage
	if err := decodeData(data, &fields); err != nil {
		return nil, err
	}
	g := &Grant{}
	var err error
	if g.AccessToken, err = tokenString(fields["access_token"]); err != nil {
		return nil, fmt.Errorf("access_token: %w", err)
	}
	if g.AccessToken == "" {
		return nil, errors.New("no access_token")
	}
	drop := func(field string, err error) {
		g.Dropped = append(g.Dropped, field+": "+err.Error())
	}
	if g.RefreshToken, err = tokenString(fields["refresh_token"]); err != nil {
		drop("refresh_token", err)
	}
	if g.ExpiresIn, err = seconds(fields["expires_in"]); err != nil {
		drop("expires_in", err)
	}
	if g.RefreshExpiresIn, err = seconds(fields["refresh_token_expires_in"]); err != nil {
		drop("refresh_token_expires_in", err)
	}
	var dropped []error
	g.AdvertiserIDs, dropped = advertiserIDs(fields["advertiser_ids"])
	for _, err := range dropped {
		drop("advertiser_ids", err)
	}
	if g.Scopes, err = scopes(fields["scope"]); err != nil {
		drop("scope", err)
	}
	if g.OpenID, err = openID(fields["open_id"]); err != nil {
		drop("open_id", err)
	}
	return g, nil
}

// isNull says whether a field is absent or JSON null: both mean "not given".
func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// shape names a JSON value's type for an error, never its content: the
// value may be a token.
func shape(raw json.RawMessage) string {
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

// tokenString reads a token: a JSON string, absent or null meaning "".
// Its error names only the shape, since the value would be a secret.
func tokenString(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", fmt.Errorf("want a string, got %s; left out", shape(raw))
	}
	return s, nil
}

// flexText is the text of a JSON string or number (as written, so a
// 19-digit number keeps its digits); ok is false for any other shape.
func flexText(raw json.RawMessage) (string, bool) {
	var f flexString
	if raw[0] != '"' && (raw[0] < '0' || raw[0] > '9') && raw[0] != '-' {
		return "", false
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return "", false
	}
	return string(f), true
}

// seconds turns a JSON count of seconds, number or string, into a Duration;
// absent, null, zero or negative is 0 (no expiry given). A whole number in
// any notation (28800, "28800", 28800.0, 2.88e4) is that many seconds; a
// fraction or anything else is an error.
func seconds(raw json.RawMessage) (time.Duration, error) {
	if isNull(raw) {
		return 0, nil
	}
	s, ok := flexText(raw)
	if !ok {
		return 0, fmt.Errorf("want a number of seconds, got %s", shape(raw))
	}
	if s == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if !json.Valid([]byte(s)) || s[0] != '-' && (s[0] < '0' || s[0] > '9') || err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%.40q is not a number of seconds", s)
	}
	// A float holds every whole number up to 2^53 exactly, far above
	// maxSeconds, and a JSON number too large for it is ±Inf.
	const maxSeconds = math.MaxInt64 / int64(time.Second)
	switch {
	case f != math.Trunc(f):
		return 0, fmt.Errorf("%.40q is not a whole number of seconds", s)
	case f <= 0:
		return 0, nil
	case f > float64(maxSeconds):
		return 0, fmt.Errorf("%.40q seconds is out of range", s)
	}
	return time.Duration(f) * time.Second, nil
}

// advertiserIDs reads a list of advertiser ids, strings or numbers. Each
// entry that is not an id is left out with its own error; a value that is
// not a list is left out whole.
func advertiserIDs(raw json.RawMessage) (ids []string, dropped []error) {
	if isNull(raw) {
		return nil, nil
	}
	var list []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		return nil, []error{fmt.Errorf("want a list, got %s; left out", shape(raw))}
	}
	for _, e := range list {
		if isNull(e) {
			continue
		}
		s, ok := flexText(e)
		if !ok {
			dropped = append(dropped, fmt.Errorf("%s is not an advertiser id", shape(e)))
			continue
		}
		id, err := advertiserID(flexString(s))
		if err != nil {
			dropped = append(dropped, err)
			continue
		}
		if id != "" {
			ids = append(ids, id)
		}
	}
	return ids, dropped
}

// advertiserID checks an advertiser id as TikTok gave it, string or
// number: only digits. A fraction or exponent ("7.0e18") means the id went
// through a float somewhere and lost its digits, so it cannot be routed on
// and is refused rather than kept as text. "" (or null) is no id.
func advertiserID(f flexString) (string, error) {
	s := string(f)
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return "", fmt.Errorf("%.40q is not an advertiser id (want digits)", s)
		}
	}
	return s, nil
}

// openID reads tt_user's business account id: a string, or a whole number
// kept as its digits.
func openID(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	s, ok := flexText(raw)
	if ok && raw[0] != '"' {
		if _, err := advertiserID(flexString(s)); err != nil {
			ok = false
		}
	}
	if !ok {
		return "", fmt.Errorf("want a string or a whole number, got %s", shape(raw))
	}
	return s, nil
}

// scopes accepts the Marketing API's list of numeric permission ids and
// tt_user's comma-separated string.
func scopes(raw json.RawMessage) ([]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var out []string
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out, nil
	}
	var list []flexString
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("want a list or a comma-separated string")
	}
	for _, s := range list {
		if s != "" {
			out = append(out, string(s))
		}
	}
	return out, nil
}

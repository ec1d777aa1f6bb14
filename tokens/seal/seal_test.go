package seal

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/tiktok-auth-proxy/tiktok-auth-proxy/tokens"
)

func TestSealRecordRoundTrip(t *testing.T) {
	s, err := New(bytes.Repeat([]byte{1}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	rec := &tokens.Record{Credential: "main", AccessToken: "access-SECRET", RefreshToken: "refresh-SECRET", OpenID: "o"}
	sealed, err := s.SealRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if rec.AccessToken != "access-SECRET" {
		t.Fatal("SealRecord changed its argument")
	}
	if strings.Contains(sealed.AccessToken, "SECRET") || strings.Contains(sealed.RefreshToken, "SECRET") || sealed.OpenID != "o" {
		t.Fatalf("sealed record %+v: tokens must be sealed, other fields kept", sealed)
	}
	if err := s.OpenRecord(sealed); err != nil {
		t.Fatal(err)
	}
	if sealed.AccessToken != rec.AccessToken || sealed.RefreshToken != rec.RefreshToken {
		t.Fatalf("opened %+v, want %+v", sealed, rec)
	}
	empty, err := s.SealRecord(&tokens.Record{Credential: "main", AccessToken: "a"})
	if err != nil || empty.RefreshToken != "" {
		t.Fatalf("an empty refresh token sealed to %q (%v), want it empty", empty.RefreshToken, err)
	}
}

// TestSealedTokenBoundToPlace: a sealed token moved to another credential
// or field does not open.
func TestSealedTokenBoundToPlace(t *testing.T) {
	s, _ := New(bytes.Repeat([]byte{1}, KeySize))
	sealed, err := s.SealRecord(&tokens.Record{Credential: "main", AccessToken: "access-SECRET", RefreshToken: "refresh-SECRET"})
	if err != nil {
		t.Fatal(err)
	}
	moved := sealed.Clone()
	moved.Credential = "other"
	if err := s.OpenRecord(moved); err == nil || !strings.Contains(err.Error(), `credential "other": access_token cannot be decrypted`) {
		t.Fatalf("OpenRecord of a token moved to another credential = %v", err)
	}
	swapped := sealed.Clone()
	swapped.AccessToken, swapped.RefreshToken = sealed.RefreshToken, sealed.AccessToken
	if err := s.OpenRecord(swapped); err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("OpenRecord of swapped fields = %v", err)
	}
}

func TestKeyCheck(t *testing.T) {
	s1, _ := New(bytes.Repeat([]byte{1}, KeySize))
	s2, _ := New(bytes.Repeat([]byte{2}, KeySize))
	kc, err := s1.KeyCheck()
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.CheckKey(kc); err != nil {
		t.Fatalf("CheckKey with the same key = %v", err)
	}
	for _, bad := range []string{kc[:len(kc)-4] + "AAAA", "not base64!", ""} {
		if err := s1.CheckKey(bad); !errors.Is(err, ErrWrongKey) {
			t.Errorf("CheckKey(%q) = %v, want ErrWrongKey", bad, err)
		}
	}
	if err := s2.CheckKey(kc); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("CheckKey with another key = %v, want ErrWrongKey", err)
	}
	if _, err := New([]byte("short")); err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Fatalf("New with a short key = %v", err)
	}
}

package auth

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func newTestKeys(t *testing.T, b byte) *Keys {
	t.Helper()
	k, err := NewKeys(Config{Secret: bytes.Repeat([]byte{b}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Minted tokens name their key (kid), and a token from another key is
// refused as such; a tampered token or one without a kid is merely invalid.
func TestTokenFromAnotherKeyIsNamed(t *testing.T) {
	server, other := newTestKeys(t, 's'), newTestKeys(t, 'o')
	if server.KeyID() == other.KeyID() || len(server.KeyID()) != 16 {
		t.Fatalf("kids %q and %q: want two different 16-digit fingerprints", server.KeyID(), other.KeyID())
	}
	tok, _, err := other.Mint("bob", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, &jwt.RegisteredClaims{})
	if err != nil || parsed.Header["kid"] != other.KeyID() {
		t.Fatalf("minted token's kid is %v (%v), want %q", parsed.Header["kid"], err, other.KeyID())
	}

	_, err = server.Verify(tok)
	if !errors.Is(err, ErrOtherKey) || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), other.KeyID()) {
		t.Fatalf("token from another key: %v, want ErrOtherKey naming kid %s", err, other.KeyID())
	}
	if strings.Contains(err.Error(), server.KeyID()) {
		t.Fatalf("refusal %q reveals the server's own kid", err)
	}

	own, _, _ := server.Mint("bob", time.Hour)
	parts := strings.Split(own, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	noKid, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "bob",
		IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}).
		SignedString(bytes.Repeat([]byte{'o'}, 32))
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"tampered": tampered, "no kid": noKid} {
		if _, err := server.Verify(tok); !errors.Is(err, ErrInvalid) || errors.Is(err, ErrOtherKey) {
			t.Errorf("%s token: %v, want ErrInvalid without ErrOtherKey", name, err)
		}
	}
	if _, err := server.Verify(own); err != nil {
		t.Fatalf("own token: %v", err)
	}
}

// LoadKey reads an existing key and never creates one.
func TestLoadKeyNeverCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	_, err := LoadKey(dir)
	if !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), filepath.Join(dir, KeyFile)) {
		t.Fatalf("LoadKey of a missing directory: %v, want ErrNoKey naming %s", err, filepath.Join(dir, KeyFile))
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadKey created %s: %v", dir, err)
	}
	created, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := LoadKey(dir); err != nil || !bytes.Equal(got, created) {
		t.Fatalf("LoadKey after LoadOrCreateKey: %v", err)
	}
}

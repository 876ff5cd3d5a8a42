// Package auth verifies and mints Parley's bearer tokens. A user's identity
// comes only from here: a token's verified `sub` claim.
package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// KeyFile is the name of the HS256 signing key in the data directory.
const KeyFile = "token-hs256.key"

// Errors returned by Verify; test them with errors.Is.
var (
	// ErrNoToken means the request carried no bearer token.
	ErrNoToken = errors.New("missing bearer token")
	// ErrExpired means the token's exp has passed.
	ErrExpired = errors.New("token expired")
	// ErrInvalid means the token is malformed, badly signed or lacks a claim.
	ErrInvalid = errors.New("invalid token")
	// ErrBadUser means a user id is not acceptable.
	ErrBadUser = errors.New("user id must be 1-64 characters of a-z, A-Z, 0-9, '-', '_', '.'")
)

var userRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidUser reports whether id is an acceptable user id.
func ValidUser(id string) bool { return userRE.MatchString(id) }

// Identity is who a verified token speaks for.
type Identity struct {
	// User is the token's subject.
	User string
	// Expires is when the token stops being valid.
	Expires time.Time
}

// Keys verifies and mints HS256 tokens with one secret.
type Keys struct {
	secret []byte
	leeway time.Duration
	now    func() time.Time
}

// NewKeys returns Keys for secret, which must be at least 32 bytes.
func NewKeys(secret []byte) (*Keys, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("signing key is %d bytes, want at least 32", len(secret))
	}
	return &Keys{secret: secret, leeway: 5 * time.Second, now: time.Now}, nil
}

// LoadOrCreateKey reads the signing key from dir, creating dir and a new
// random key (file mode 0600) on first start.
func LoadOrCreateKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, KeyFile)
	key, err := os.ReadFile(path)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("close signing key: %w", err)
	}
	return key, nil
}

// Mint returns a token for user that expires after ttl.
func (k *Keys) Mint(user string, ttl time.Duration) (string, time.Time, error) {
	if !ValidUser(user) {
		return "", time.Time{}, fmt.Errorf("mint token for %q: %w", user, ErrBadUser)
	}
	now := k.now()
	exp := now.Add(ttl).Truncate(time.Second)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	})
	s, err := tok.SignedString(k.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return s, exp, nil
}

// Verify checks a token's signature (HS256 only), expiry and subject.
func (k *Keys) Verify(token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrNoToken
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return k.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(k.leeway),
		jwt.WithTimeFunc(k.now),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Identity{}, ErrExpired
	case err != nil:
		return Identity{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	case !ValidUser(claims.Subject):
		return Identity{}, fmt.Errorf("%w: sub: %w", ErrInvalid, ErrBadUser)
	}
	return Identity{User: claims.Subject, Expires: claims.ExpiresAt.Time.Add(k.leeway)}, nil
}

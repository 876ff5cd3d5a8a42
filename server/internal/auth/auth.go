// Package auth verifies and mints Parley's bearer tokens. A user's identity
// comes only from here: a token's verified `sub` claim.
package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
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
	// ErrTimeClaim means a token's exp, nbf or iat is not a JSON number.
	ErrTimeClaim = errors.New("time claim is not a number")
	// ErrBadUser means a user id is not acceptable.
	ErrBadUser = errors.New("user id must be 1-64 characters of a-z, A-Z, 0-9, '-', '_', '.'")
	// ErrOtherKey means an HS256 token names (kid) a key other than the
	// secret's: it was minted with another data directory or secret file.
	ErrOtherKey = errors.New("token was signed with another key")
	// ErrNoKey means the data directory holds no signing key.
	ErrNoKey = errors.New("no signing key")
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

// Config says which tokens Keys accepts. The zero value of each optional
// field means: no such check.
type Config struct {
	// Secret signs and verifies HS256 tokens (at least 32 bytes): the
	// server's own key, or one shared with the app's backend.
	Secret []byte
	// PublicKeys verify RS256 and EdDSA tokens from the app's backend.
	PublicKeys []PublicKey
	// Issuer, if set, must be the token's iss; minted tokens carry it.
	Issuer string
	// Audience, if set, must be among the token's aud; minted tokens carry it.
	Audience string
	// Leeway tolerates clock skew on exp, nbf and iat (default
	// DefaultLeeway).
	Leeway time.Duration
}

// DefaultLeeway is Config.Leeway's default.
const DefaultLeeway = 5 * time.Second

// Keys verifies tokens, each algorithm pinned to its keys, and mints HS256
// tokens with the secret.
type Keys struct {
	cfg Config
	kid string // KeyID(cfg.Secret), the kid header of minted tokens
	now func() time.Time

	// cache holds tokens that verified, so a client making many calls with
	// one token pays for the signature check once. Keys do not change while
	// the server runs, so a token that verified stays valid until its exp.
	mu    sync.Mutex
	cache map[string]Identity
}

// cacheSize bounds the verified-token cache; when full it starts afresh.
const cacheSize = 16384

// NewKeys returns Keys for cfg.
func NewKeys(cfg Config) (*Keys, error) {
	if len(cfg.Secret) < 32 {
		return nil, fmt.Errorf("signing key is %d bytes, want at least 32", len(cfg.Secret))
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = DefaultLeeway
	}
	return &Keys{cfg: cfg, kid: KeyID(cfg.Secret), now: time.Now, cache: make(map[string]Identity)}, nil
}

// KeyID is the kid of tokens signed with secret: the first 8 bytes of its
// SHA-256, in hex. It names a key without revealing it, so a refused token
// can say that it was signed with another key. In a token it tells the
// holder nothing the token does not (any HS256 token already lets one test
// guesses of a weak secret offline); the server's own kid is therefore not
// given to callers without a valid token, only logged.
func KeyID(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hex.EncodeToString(sum[:8])
}

// KeyID returns the kid of the tokens k mints.
func (k *Keys) KeyID() string { return k.kid }

// LoadKey reads the signing key from dir; unlike LoadOrCreateKey it never
// creates one. A missing key is ErrNoKey, naming the absolute path looked at.
func LoadKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, KeyFile)
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if abs, aerr := filepath.Abs(path); aerr == nil {
			path = abs
		}
		return nil, fmt.Errorf("%w: %s does not exist", ErrNoKey, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	return key, nil
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
	if err := writeFileAtomic(path, key); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	return key, nil
}

// writeFileAtomic writes data to path (mode 0600) through a synced
// temporary file and a rename, so a failure (a full disk) never leaves a
// truncated key behind for the next start to trip over.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-key-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Mint returns an HS256 token for user that expires after ttl.
func (k *Keys) Mint(user string, ttl time.Duration) (string, time.Time, error) {
	if !ValidUser(user) {
		return "", time.Time{}, fmt.Errorf("mint token for %q: %w", user, ErrBadUser)
	}
	now := k.now()
	exp := now.Add(ttl).Truncate(time.Second)
	claims := jwt.RegisteredClaims{
		Subject:   user,
		Issuer:    k.cfg.Issuer,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	}
	if k.cfg.Audience != "" {
		claims.Audience = jwt.ClaimStrings{k.cfg.Audience}
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.cfg.Secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return s, exp, nil
}

// Verify checks a token's signature with a key pinned to the token's
// algorithm (HS256 with the secret; RS256 and EdDSA with public keys, chosen
// by kid when the token names one), then exp, iss, aud and sub.
func (k *Keys) Verify(token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrNoToken
	}
	k.mu.Lock()
	id, ok := k.cache[token]
	k.mu.Unlock()
	if ok {
		if k.now().After(id.Expires) {
			return Identity{}, ErrExpired
		}
		return id, nil
	}
	id, err := k.verify(token)
	if err == nil {
		k.mu.Lock()
		if len(k.cache) >= cacheSize {
			clear(k.cache)
		}
		k.cache[token] = id
		k.mu.Unlock()
	}
	return id, err
}

func (k *Keys) verify(token string) (Identity, error) {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(k.algorithms()),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(k.cfg.Leeway),
		jwt.WithTimeFunc(k.now),
	}
	if k.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(k.cfg.Issuer))
	}
	if k.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(k.cfg.Audience))
	}
	var claims tokenClaims
	t, err := jwt.ParseWithClaims(token, &claims, k.keyFor, opts...)
	switch {
	case claims.badTime != nil:
		return Identity{}, fmt.Errorf("%w: %w", ErrInvalid, claims.badTime)
	case errors.Is(err, jwt.ErrTokenExpired):
		return Identity{}, ErrExpired
	case errors.Is(err, jwt.ErrTokenSignatureInvalid) && k.otherKey(t):
		return Identity{}, fmt.Errorf("%w: %w (kid %q)", ErrInvalid, ErrOtherKey, t.Header["kid"])
	case err != nil:
		return Identity{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	case !ValidUser(claims.Subject):
		return Identity{}, fmt.Errorf("%w: sub: %w", ErrInvalid, ErrBadUser)
	}
	return Identity{User: claims.Subject, Expires: claims.ExpiresAt.Time.Add(k.cfg.Leeway)}, nil
}

// otherKey reports whether t is an HS256 token whose kid names a key other
// than the secret: its bad signature comes from a mismatched key, not from
// tampering.
func (k *Keys) otherKey(t *jwt.Token) bool {
	if t == nil || t.Method == nil || t.Method.Alg() != jwt.SigningMethodHS256.Alg() {
		return false
	}
	kid, ok := t.Header["kid"].(string)
	return ok && kid != "" && len(kid) <= 64 && kid != k.kid
}

func (k *Keys) algorithms() []string {
	algs := []string{jwt.SigningMethodHS256.Alg()}
	for _, pk := range k.cfg.PublicKeys {
		if !slices.Contains(algs, pk.Alg) {
			algs = append(algs, pk.Alg)
		}
	}
	return algs
}

// keyFor returns the key pinned to the token's algorithm: the secret only
// for HS256, public keys only for their own algorithm, so a token cannot
// pick how its signature is checked (an HS256 token "signed" with an RSA
// public key finds no RSA key here).
func (k *Keys) keyFor(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if alg == jwt.SigningMethodHS256.Alg() {
		return k.cfg.Secret, nil
	}
	kid, _ := t.Header["kid"].(string)
	var keys jwt.VerificationKeySet
	for _, pk := range k.cfg.PublicKeys {
		if pk.Alg == alg && (kid == "" || pk.KID == "" || pk.KID == kid) {
			keys.Keys = append(keys.Keys, pk.Key)
		}
	}
	if len(keys.Keys) == 0 {
		return nil, fmt.Errorf("no %s key with kid %q", alg, kid)
	}
	return keys, nil
}

// tokenClaims are the registered claims, decoded strictly: jwt's
// NumericDate also accepts a JSON string holding a number ("exp":
// "9999999999"), which RFC 7519 does not allow and which other verifiers
// read differently, so a time claim that is not a JSON number is refused.
type tokenClaims struct {
	jwt.RegisteredClaims
	// badTime is why decoding failed, if a time claim was not a number
	// (jwt's error does not wrap it).
	badTime error
}

// UnmarshalJSON decodes the registered claims after checking that exp, nbf
// and iat, where present, are JSON numbers.
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	for _, name := range []string{"exp", "nbf", "iat"} {
		v, ok := raw[name]
		if kind := jsonKind(v); ok && kind != "number" {
			c.badTime = fmt.Errorf("%w: %s is a JSON %s; want a number of seconds since 1970", ErrTimeClaim, name, kind)
			return c.badTime
		}
	}
	return json.Unmarshal(b, &c.RegisteredClaims)
}

// jsonKind names the type of v, a valid JSON value, by its first byte.
func jsonKind(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch c := v[0]; {
	case c == '"':
		return "string"
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	}
	return "number"
}

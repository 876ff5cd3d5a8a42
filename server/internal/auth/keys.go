package auth

import (
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// PublicKey verifies tokens of one algorithm.
type PublicKey struct {
	// KID, if set, must match the token's kid header when it has one.
	KID string
	// Alg is RS256 or EdDSA.
	Alg string
	// Key is an *rsa.PublicKey or an ed25519.PublicKey.
	Key any
}

func algFor(key any) (string, error) {
	switch key.(type) {
	case *rsa.PublicKey:
		return jwt.SigningMethodRS256.Alg(), nil
	case ed25519.PublicKey:
		return jwt.SigningMethodEdDSA.Alg(), nil
	}
	return "", fmt.Errorf("unsupported public key type %T: want RSA (RS256) or Ed25519 (EdDSA)", key)
}

// LoadPublicKeyFile reads a PEM public key (PKIX "PUBLIC KEY" block): RSA
// keys verify RS256 tokens, Ed25519 keys EdDSA tokens.
func LoadPublicKeyFile(path string) ([]PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("public key %s: want a PEM \"PUBLIC KEY\" block", path)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	alg, err := algFor(key)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return []PublicKey{{Alg: alg, Key: key}}, nil
}

// LoadJWKSFile reads a JSON Web Key Set of RSA and Ed25519 public keys. A
// key's alg, when given, must agree with its type.
func LoadJWKSFile(path string) ([]PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read JWKS: %w", err)
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", path, err)
	}
	jwks, err := set.JWKSlice()
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", path, err)
	}
	var keys []PublicKey
	for _, j := range jwks {
		m := j.Marshal()
		alg, err := algFor(j.Key())
		if err != nil {
			return nil, fmt.Errorf("JWKS %s key %q: %w", path, m.KID, err)
		}
		if m.ALG != "" && string(m.ALG) != alg {
			return nil, fmt.Errorf("JWKS %s key %q: alg %s does not fit its key type (%s)", path, m.KID, m.ALG, alg)
		}
		keys = append(keys, PublicKey{KID: m.KID, Alg: alg, Key: j.Key()})
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS " + path + ": no keys")
	}
	return keys, nil
}

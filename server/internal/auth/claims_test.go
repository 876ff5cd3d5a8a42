package auth

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// signRaw signs a token whose claims are the JSON text claims, as a
// careless or hostile issuer might write it.
func signRaw(t *testing.T, secret []byte, claims string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	unsigned := enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(claims))
	sig, err := jwt.SigningMethodHS256.Sign(unsigned, secret)
	if err != nil {
		t.Fatal(err)
	}
	return unsigned + "." + enc(sig)
}

// Time claims must be JSON numbers: jwt's NumericDate also reads a string
// holding digits, so "exp":"9999999999" made a token that never expires.
func TestTimeClaimsMustBeNumbers(t *testing.T) {
	secret := []byte(strings.Repeat("s", 32))
	k, err := NewKeys(Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	num := func(d int64) string { return strconv.FormatInt(now+d, 10) }
	for _, tc := range []struct {
		name, claims string
		want         error // nil: accepted
	}{
		{"numbers", `{"sub":"alice","exp":` + num(3600) + `,"iat":` + num(0) + `,"nbf":` + num(-10) + `}`, nil},
		{"fractional exp", `{"sub":"alice","exp":` + num(3600) + `.5}`, nil},
		{"exp a string", `{"sub":"alice","exp":"9999999999"}`, ErrTimeClaim},
		{"exp a string, iat a number", `{"sub":"alice","exp":"9999999999","iat":` + num(0) + `}`, ErrTimeClaim},
		{"nbf a string", `{"sub":"alice","exp":` + num(3600) + `,"nbf":"0"}`, ErrTimeClaim},
		{"iat a string", `{"sub":"alice","exp":` + num(3600) + `,"iat":"` + num(0) + `"}`, ErrTimeClaim},
		{"exp null", `{"sub":"alice","exp":null}`, ErrTimeClaim},
		{"iat an object", `{"sub":"alice","exp":` + num(3600) + `,"iat":{}}`, ErrTimeClaim},
		{"exp an array", `{"sub":"alice","exp":[` + num(3600) + `]}`, ErrTimeClaim},
		{"exp a boolean", `{"sub":"alice","exp":true}`, ErrTimeClaim},
		{"no exp", `{"sub":"alice"}`, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := k.Verify(signRaw(t, secret, tc.claims))
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == nil && id.User != "alice":
				t.Fatalf("identity %+v", id)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("got %v (identity %+v), want %v", err, id, tc.want)
			case tc.want != nil && !errors.Is(err, ErrInvalid):
				t.Fatalf("got %v, want it to be an invalid token too", err)
			}
		})
	}
}

package store

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func b64url(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// parseJWKS extracts the RSA and P-256 signing keys of a JSON Web Key Set.
// Keys of other types are skipped (a cluster may publish keys we cannot
// use); a set with no usable key is an error because trusting it would
// silently reject every token.
func parseJWKS(data []byte) (byKid map[string]crypto.PublicKey, anon []crypto.PublicKey, err error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, nil, fmt.Errorf("parse JWKS: %w", err)
	}
	byKid = map[string]crypto.PublicKey{}
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var pub crypto.PublicKey
		switch k.Kty {
		case "RSA":
			n, err1 := b64url(k.N)
			e, err2 := b64url(k.E)
			if err := errors.Join(err1, err2); err != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
				return nil, nil, fmt.Errorf("JWKS key %d (%q): bad RSA modulus or exponent", i, k.Kid)
			}
			pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		case "EC":
			if k.Crv != "P-256" {
				continue
			}
			x, err1 := b64url(k.X)
			y, err2 := b64url(k.Y)
			if err := errors.Join(err1, err2); err != nil || len(x) != 32 || len(y) != 32 {
				return nil, nil, fmt.Errorf("JWKS key %d (%q): bad EC point", i, k.Kid)
			}
			raw := append(append([]byte{4}, x...), y...)
			ek, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
			if err != nil {
				return nil, nil, fmt.Errorf("JWKS key %d (%q): %w", i, k.Kid, err)
			}
			pub = ek
		default:
			continue
		}
		if k.Kid == "" {
			anon = append(anon, pub)
		} else {
			byKid[k.Kid] = pub
		}
	}
	if len(byKid)+len(anon) == 0 {
		return nil, nil, errors.New("JWKS contains no usable RS256/ES256 signing key")
	}
	return byKid, anon, nil
}

// TrustJWKS adds the keys of a JSON Web Key Set (as served by kube-apiserver
// at /openid/v1/jwks) to the keys that STS and the pod identity endpoint
// accept token signatures from. Keys are matched by "kid"; keys without a kid
// are tried for every token.
func (s *Store) TrustJWKS(jwks []byte) error {
	byKid, anon, err := parseJWKS(jwks)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range byKid {
		s.keys[k] = v
	}
	s.anonKeys = append(s.anonKeys, anon...)
	return nil
}

// SetJWKSSource installs a fetcher that is called (at most once a second)
// when a token names a key ID the store does not know, so a cluster's key
// rotation is picked up without restarting the fake. The result is passed
// to TrustJWKS.
func (s *Store) SetJWKSSource(fetch func(ctx context.Context) ([]byte, error)) {
	s.jwksMu.Lock()
	defer s.jwksMu.Unlock()
	s.jwksSource = fetch
	s.lastJWKSFetch = time.Time{}
}

func (s *Store) candidateKeys(kid string) (keys []crypto.PublicKey, known bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if kid == "" {
		for _, k := range s.keys {
			keys = append(keys, k)
		}
		return append(keys, s.anonKeys...), true
	}
	k, ok := s.keys[kid]
	if ok {
		keys = append(keys, k)
	}
	return append(keys, s.anonKeys...), ok
}

func (s *Store) refreshJWKS(ctx context.Context) {
	s.jwksMu.Lock()
	defer s.jwksMu.Unlock()
	if s.jwksSource == nil || time.Since(s.lastJWKSFetch) < time.Second {
		return
	}
	s.lastJWKSFetch = time.Now()
	data, err := s.jwksSource(ctx)
	if err == nil {
		err = s.TrustJWKS(data)
	}
	if err != nil {
		s.log.Warn("JWKS refresh failed", "error", err)
	}
}

type tokenClaims struct {
	Issuer   string
	Subject  string
	Audience []string
	Expiry   time.Time
}

func numericDate(raw json.RawMessage) (time.Time, bool) {
	var f json.Number
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&f); err != nil {
		return time.Time{}, false
	}
	v, err := f.Float64()
	if err != nil {
		return time.Time{}, false
	}
	sec := int64(v)
	return time.Unix(sec, int64((v-float64(sec))*1e9)), true
}

func badToken(msg string) *apiError {
	return &apiError{status: 400, code: "InvalidIdentityToken", msg: msg}
}

// verifyJWT checks signature (RS256/ES256 against trusted keys), exp, nbf and
// audience, the checks STS performs on a web identity token. Errors carry STS
// codes (InvalidIdentityToken, ExpiredTokenException).
func (s *Store) verifyJWT(ctx context.Context, raw, audience string) (*tokenClaims, *apiError) {
	parts := strings.Split(strings.TrimSpace(raw), ".")
	if len(parts) != 3 {
		return nil, badToken("The ID token provided is not a valid JWT.")
	}
	hb, err := b64url(parts[0])
	if err != nil {
		return nil, badToken("The ID token provided has a malformed header.")
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, badToken("The ID token provided has a malformed header.")
	}
	sig, err := b64url(parts[2])
	if err != nil {
		return nil, badToken("The ID token provided has a malformed signature.")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if hdr.Alg != "RS256" && hdr.Alg != "ES256" {
		return nil, badToken("Unsupported token signing algorithm " + hdr.Alg + ".")
	}
	keys, known := s.candidateKeys(hdr.Kid)
	verified := verifyWith(keys, hdr.Alg, digest[:], sig)
	if !verified && !known {
		s.refreshJWKS(ctx)
		keys, _ = s.candidateKeys(hdr.Kid)
		verified = verifyWith(keys, hdr.Alg, digest[:], sig)
	}
	if !verified {
		return nil, badToken("Couldn't verify the signature of the web identity token against the trusted keys.")
	}
	cb, err := b64url(parts[1])
	if err != nil {
		return nil, badToken("The ID token provided has malformed claims.")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(cb, &m); err != nil {
		return nil, badToken("The ID token provided has malformed claims.")
	}
	var cl tokenClaims
	_ = json.Unmarshal(m["iss"], &cl.Issuer)
	_ = json.Unmarshal(m["sub"], &cl.Subject)
	if a, ok := m["aud"]; ok {
		var one string
		if json.Unmarshal(a, &one) == nil {
			cl.Audience = []string{one}
		} else if json.Unmarshal(a, &cl.Audience) != nil {
			return nil, badToken("The ID token provided has a malformed aud claim.")
		}
	}
	now := s.now()
	exp, ok := numericDate(m["exp"])
	if !ok {
		return nil, badToken("The ID token provided has no valid exp claim.")
	}
	cl.Expiry = exp
	if !now.Before(exp) {
		return nil, &apiError{status: 400, code: "ExpiredTokenException",
			msg: fmt.Sprintf("Token expired: current date/time %s must be before the expiration date/time %s", now.UTC().Format(time.RFC3339), exp.UTC().Format(time.RFC3339))}
	}
	if raw, ok := m["nbf"]; ok {
		nbf, ok := numericDate(raw)
		if !ok || now.Before(nbf) {
			return nil, badToken("The ID token provided is not yet valid (nbf).")
		}
	}
	audOK := false
	for _, a := range cl.Audience {
		audOK = audOK || a == audience
	}
	if !audOK {
		return nil, badToken("Incorrect token audience")
	}
	if cl.Subject == "" {
		return nil, badToken("The ID token provided has no sub claim.")
	}
	return &cl, nil
}

func verifyWith(keys []crypto.PublicKey, alg string, digest, sig []byte) bool {
	for _, k := range keys {
		switch pub := k.(type) {
		case *rsa.PublicKey:
			if alg == "RS256" && rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig) == nil {
				return true
			}
		case *ecdsa.PublicKey:
			if alg == "ES256" && len(sig) == 64 {
				r := new(big.Int).SetBytes(sig[:32])
				s := new(big.Int).SetBytes(sig[32:])
				if ecdsa.Verify(pub, digest, r, s) {
					return true
				}
			}
		}
	}
	return false
}

package store

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// Service-account tokens are RS256 JWTs, kube-apiserver's default and the
// e2e cluster's key; the fake trusts and issues nothing else.

// Issuer is a stand-in for kube-apiserver's service-account token issuer, so
// in-process tests can mint real signed tokens and hand its JWKS to
// TrustJWKS.
type Issuer struct {
	url string
	kid string
	key *rsa.PrivateKey
}

// NewIssuer returns an issuer with a fresh RSA-2048 key, named issuerURL in
// the tokens' "iss" claim.
func NewIssuer(issuerURL string) (*Issuer, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	// kube-apiserver derives the kid from the public key the same way.
	return &Issuer{url: issuerURL, kid: base64.RawURLEncoding.EncodeToString(sum[:]), key: k}, nil
}

// JWKS returns the public key as a JSON Web Key Set, the document
// kube-apiserver serves at /openid/v1/jwks.
func (i *Issuer) JWKS() []byte {
	b, _ := json.Marshal(map[string]any{"keys": []jwk{{
		Kty: "RSA", Kid: i.kid, Use: "sig", Alg: "RS256",
		N: base64.RawURLEncoding.EncodeToString(i.key.N.Bytes()),
		E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(i.key.E)).Bytes()),
	}}})
	return b
}

// Token returns a signed token like a projected service-account token: iss,
// sub, aud (a one-element array, as kube-apiserver emits it) and exp
// (now+ttl; a negative ttl gives an already-expired token).
func (i *Issuer) Token(subject, audience string, ttl time.Duration) string {
	hdr, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": i.kid, "typ": "JWT"})
	body, _ := json.Marshal(claims{Issuer: i.url, Subject: subject, Audience: []string{audience}, Expiry: time.Now().Add(ttl).Unix()})
	input := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(body)
	digest := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, i.key, crypto.SHA256, digest[:])
	if err != nil {
		panic("awsfake: signing failed: " + err.Error())
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	N   string `json:"n"`
	E   string `json:"e"`
}

type claims struct {
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	Audience []string `json:"aud"`
	Expiry   int64    `json:"exp"`
}

// parseJWKS extracts the RSA signing keys of a JSON Web Key Set by kid.
// Other keys are skipped (a cluster may publish keys the fake cannot use); a
// set with no usable key is an error because trusting it would silently
// reject every token.
func parseJWKS(data []byte) (map[string]*rsa.PublicKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" || k.Kid == "" || k.Use != "" && k.Use != "sig" {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err := errors.Join(err1, err2); err != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("JWKS key %q: bad RSA modulus or exponent", k.Kid)
		}
		keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS contains no RSA signing key with a kid")
	}
	return keys, nil
}

// TrustJWKS adds the keys of a JSON Web Key Set (as served by kube-apiserver
// at /openid/v1/jwks) to the keys whose token signatures STS and the pod
// identity endpoint accept, matched by "kid".
func (s *Store) TrustJWKS(jwks []byte) error {
	keys, err := parseJWKS(jwks)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for kid, k := range keys {
		s.keys[kid] = k
	}
	return nil
}

func badToken(msg string) *apiError {
	return badRequest("InvalidIdentityToken", msg)
}

// verifyJWT checks what STS checks of a web identity token that the driver
// could get wrong: a trusted signature, the audience and expiry. It returns
// the subject. Errors carry STS codes (InvalidIdentityToken,
// ExpiredTokenException).
func (s *Store) verifyJWT(raw, audience string) (subject string, e *apiError) {
	parts := strings.Split(strings.TrimSpace(raw), ".")
	if len(parts) != 3 {
		return "", badToken("The ID token provided is not a valid JWT.")
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var cl claims
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if errors.Join(err1, err2, err3, json.Unmarshal(hb, &hdr), json.Unmarshal(cb, &cl)) != nil {
		return "", badToken("The ID token provided is malformed.")
	}
	s.mu.RLock()
	key := s.keys[hdr.Kid]
	s.mu.RUnlock()
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if hdr.Alg != "RS256" || key == nil || rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], sig) != nil {
		return "", badToken("Couldn't verify the signature of the web identity token against the trusted keys.")
	}
	if now := s.now(); now.Unix() >= cl.Expiry {
		return "", badRequest("ExpiredTokenException", fmt.Sprintf("Token expired: current date/time %s must be before the expiration date/time %s",
			now.UTC().Format(time.RFC3339), time.Unix(cl.Expiry, 0).UTC().Format(time.RFC3339)))
	}
	switch {
	case !slices.Contains(cl.Audience, audience):
		return "", badToken("Incorrect token audience")
	case cl.Subject == "":
		return "", badToken("The ID token provided has no sub claim.")
	}
	return cl.Subject, nil
}

package store

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"time"
)

// Issuer is a stand-in for kube-apiserver's service-account token issuer, so
// unit tests can mint real signed tokens and hand its JWKS to TrustJWKS.
type Issuer struct {
	url    string
	kid    string
	alg    string
	signer crypto.Signer
}

// NewIssuer returns an issuer with a fresh RSA-2048 key signing RS256, the
// kube-apiserver default.
func NewIssuer(issuerURL string) (*Issuer, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return newIssuer(issuerURL, "RS256", k)
}

// NewIssuerES256 returns an issuer with a fresh P-256 key signing ES256, for
// clusters configured with an EC service-account key.
func NewIssuerES256(issuerURL string) (*Issuer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return newIssuer(issuerURL, "ES256", k)
}

func newIssuer(url, alg string, k crypto.Signer) (*Issuer, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	// kube-apiserver derives the kid from the public key the same way.
	return &Issuer{url: url, kid: base64.RawURLEncoding.EncodeToString(sum[:]), alg: alg, signer: k}, nil
}

// URL returns the issuer URL put in the "iss" claim.
func (i *Issuer) URL() string { return i.url }

// KeyID returns the "kid" of the signing key.
func (i *Issuer) KeyID() string { return i.kid }

// JWKS returns the public key as a JSON Web Key Set, the document
// kube-apiserver serves at /openid/v1/jwks.
func (i *Issuer) JWKS() []byte {
	k := map[string]string{"use": "sig", "kid": i.kid, "alg": i.alg}
	switch pub := i.signer.Public().(type) {
	case *rsa.PublicKey:
		k["kty"] = "RSA"
		k["n"] = base64.RawURLEncoding.EncodeToString(pub.N.Bytes())
		k["e"] = base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		raw, _ := pub.Bytes() // 0x04 || X || Y
		k["kty"] = "EC"
		k["crv"] = "P-256"
		k["x"] = base64.RawURLEncoding.EncodeToString(raw[1:33])
		k["y"] = base64.RawURLEncoding.EncodeToString(raw[33:65])
	}
	b, _ := json.Marshal(map[string]any{"keys": []any{k}})
	return b
}

// Token returns a signed token like a projected service-account token: iss,
// sub, aud (as a one-element array, as kube-apiserver emits it), iat, nbf
// (now) and exp (now+ttl; a negative ttl gives an already-expired token).
// Service-account subjects also get the kubernetes.io claim.
func (i *Issuer) Token(subject, audience string, ttl time.Duration) string {
	now := time.Now()
	claims := map[string]any{
		"iss": i.url,
		"sub": subject,
		"aud": []string{audience},
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	}
	if rest, ok := strings.CutPrefix(subject, "system:serviceaccount:"); ok {
		if ns, sa, ok := strings.Cut(rest, ":"); ok {
			claims["kubernetes.io"] = map[string]any{"namespace": ns, "serviceaccount": map[string]string{"name": sa}}
		}
	}
	return i.Sign(claims)
}

// Sign signs arbitrary claims with the issuer's key and kid, for negative
// tests (missing claims, future nbf, string audiences, ...).
func (i *Issuer) Sign(claims map[string]any) string {
	hdr, _ := json.Marshal(map[string]string{"alg": i.alg, "kid": i.kid, "typ": "JWT"})
	body, err := json.Marshal(claims)
	if err != nil {
		panic("awsfake: claims are not JSON-encodable: " + err.Error())
	}
	input := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(body)
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	switch k := i.signer.(type) {
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(nil, k, crypto.SHA256, digest[:])
	case *ecdsa.PrivateKey:
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, k, digest[:])
		if err == nil {
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
		}
	}
	if err != nil {
		panic("awsfake: signing failed: " + err.Error())
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

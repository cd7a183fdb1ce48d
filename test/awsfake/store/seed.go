package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Seed is the JSON document accepted by LoadSeed, the -seed flag and
// POST /_fake/seed. Every entry is validated before any is applied, so a bad
// seed leaves the store untouched.
type Seed struct {
	Secrets     []SeedSecret      `json:"secrets,omitempty"`
	Parameters  []SeedParameter   `json:"parameters,omitempty"`
	Roles       []Role            `json:"roles,omitempty"`
	PodIdentity []SeedPodIdentity `json:"podIdentity,omitempty"`
	// JWKS optionally embeds a JSON Web Key Set to trust (see TrustJWKS).
	JWKS json.RawMessage `json:"jwks,omitempty"`
}

// SeedSecret is one secret. Exactly one of String and BinaryBase64 is set.
type SeedSecret struct {
	Region       string  `json:"region"`
	Name         string  `json:"name"`
	String       *string `json:"string,omitempty"`
	BinaryBase64 *string `json:"binaryBase64,omitempty"`
	// Previous, if set, is stored first so it ends up AWSPREVIOUS and the
	// main value AWSCURRENT: handy for rotation tests.
	Previous *string `json:"previous,omitempty"`
}

// SeedParameter is one SSM parameter (Type defaults to String).
type SeedParameter struct {
	Region string `json:"region"`
	Name   string `json:"name"`
	Value  string `json:"value"`
	Type   string `json:"type,omitempty"`
}

// SeedPodIdentity is one pod identity association.
type SeedPodIdentity struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	RoleARN        string `json:"roleArn"`
}

func (sec SeedSecret) value() (Value, error) {
	switch {
	case sec.String != nil && sec.BinaryBase64 != nil:
		return Value{}, errors.New("has both string and binaryBase64")
	case sec.String != nil:
		return Value{String: *sec.String}, nil
	case sec.BinaryBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*sec.BinaryBase64)
		if err != nil {
			return Value{}, fmt.Errorf("binaryBase64: %w", err)
		}
		if b == nil {
			b = []byte{}
		}
		return Value{Binary: b}, nil
	}
	return Value{}, errors.New("needs string or binaryBase64")
}

// LoadSeed validates and applies a Seed document (unknown fields are errors,
// to catch typos). Secrets that already exist get a new version.
func (s *Store) LoadSeed(data []byte) error {
	var seed Seed
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&seed); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return s.ApplySeed(seed)
}

// ApplySeed is LoadSeed for an already-decoded Seed.
func (s *Store) ApplySeed(seed Seed) error {
	values := make([]Value, len(seed.Secrets))
	for i, sec := range seed.Secrets {
		if sec.Region == "" || !validSecretName(sec.Name) {
			return fmt.Errorf("seed: secrets[%d]: region and a valid name are required", i)
		}
		v, err := sec.value()
		if err != nil {
			return fmt.Errorf("seed: secrets[%d] (%s): %w", i, sec.Name, err)
		}
		values[i] = v
	}
	for i, p := range seed.Parameters {
		if p.Region == "" || p.Name == "" {
			return fmt.Errorf("seed: parameters[%d]: region and name are required", i)
		}
		if p.Type != "" && !validType(p.Type) {
			return fmt.Errorf("seed: parameters[%d] (%s): type must be String, StringList or SecureString", i, p.Name)
		}
	}
	for i, r := range seed.Roles {
		if _, _, ok := parseRoleARN(r.ARN); !ok {
			return fmt.Errorf("seed: roles[%d]: %q is not an IAM role ARN", i, r.ARN)
		}
	}
	for i, a := range seed.PodIdentity {
		if a.Namespace == "" || a.ServiceAccount == "" || a.RoleARN == "" {
			return fmt.Errorf("seed: podIdentity[%d]: namespace, serviceAccount and roleArn are required", i)
		}
	}
	if len(seed.JWKS) > 0 {
		if _, _, err := parseJWKS(seed.JWKS); err != nil {
			return fmt.Errorf("seed: jwks: %w", err)
		}
	}

	for i, sec := range seed.Secrets {
		if sec.Previous != nil {
			s.CreateSecret(sec.Region, sec.Name, Value{String: *sec.Previous})
		}
		s.CreateSecret(sec.Region, sec.Name, values[i])
	}
	for _, p := range seed.Parameters {
		s.PutParameter(p.Region, p.Name, p.Value, p.Type)
	}
	for _, r := range seed.Roles {
		s.AddRole(r)
	}
	for _, a := range seed.PodIdentity {
		s.AddPodIdentityAssociation(a.Namespace, a.ServiceAccount, a.RoleARN)
	}
	if len(seed.JWKS) > 0 {
		return s.TrustJWKS(seed.JWKS)
	}
	return nil
}

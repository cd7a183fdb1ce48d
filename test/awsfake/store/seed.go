package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"
)

// Control endpoints (JSON, under /_fake/) let tests that run the fake out of
// process write its state, one way, and read its counters. They are never
// counted and never subject to latency, quotas or faults.
const (
	PathSeed   = "/_fake/seed"    // POST a Seed: 200 with a SeedReply, or 400 {"error": ...}
	PathCalls  = "/_fake/calls"   // GET: CallCounts
	PathHealth = "/_fake/healthz" // GET: 200 when serving
)

// Seed is the document posted to PathSeed. Each part does what the Go method
// named beside it does, secrets in the order of their entries. The whole
// document is checked before any of it is applied, so a bad seed changes
// nothing; unknown fields are errors, to catch typos.
type Seed struct {
	Secrets     []SeedSecret      `json:"secrets,omitempty"`     // CreateSecret
	Parameters  []SeedParameter   `json:"parameters,omitempty"`  // PutParameter
	Roles       []Role            `json:"roles,omitempty"`       // AddRole
	PodIdentity []SeedPodIdentity `json:"podIdentity,omitempty"` // AddPodIdentityAssociation
	// Faults maps a region ("" every region) to its fault, as SetFault: a
	// rate of 0 clears it.
	Faults map[string]Fault `json:"faults,omitempty"`
	// Latency is SetLatency's duration in Go syntax ("20ms", "0s"); ""
	// leaves it as it is.
	Latency string          `json:"latency,omitempty"`
	Quotas  *QuotaConfig    `json:"quotas,omitempty"` // SetQuotas
	JWKS    json.RawMessage `json:"jwks,omitempty"`   // TrustJWKS
}

// SeedSecret puts a new string version of a secret, creating the secret if
// needed: the version takes AWSCURRENT and hands AWSPREVIOUS to the version
// that had it, which is a rotation. With Delete it removes the secret, if
// there is one, with every version, so that a later entry or seed creates it
// again with a new ARN and none of the old version IDs.
type SeedSecret struct {
	Region string `json:"region"`
	Name   string `json:"name"`
	Value  string `json:"value,omitempty"`
	Delete bool   `json:"delete,omitempty"`
}

// SeedParameter puts a new version of an SSM parameter. Type is String,
// StringList or SecureString; "" keeps the parameter's type (String for a
// new one).
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

// SeedReply answers a Seed with what its entries made, entry by entry.
type SeedReply struct {
	Secrets    []SeededSecret `json:"secrets"`    // per Seed.Secrets entry; empty for a delete
	Parameters []int64        `json:"parameters"` // the version each Seed.Parameters entry made
}

// SeededSecret is a secret's ARN and the version a SeedSecret made.
type SeededSecret struct {
	ARN       string `json:"arn,omitempty"`
	VersionID string `json:"versionId,omitempty"`
}

func (seed *Seed) check() error {
	var errs []error
	for i, sec := range seed.Secrets {
		if sec.Region == "" || sec.Name == "" || sec.Delete && sec.Value != "" {
			errs = append(errs, fmt.Errorf("secrets[%d]: region and name are required, and a delete has no value", i))
		}
	}
	for i, p := range seed.Parameters {
		if p.Region == "" || p.Name == "" || p.Type != "" && !validType(p.Type) {
			errs = append(errs, fmt.Errorf("parameters[%d]: region and name are required; type is String, StringList or SecureString", i))
		}
	}
	for i, r := range seed.Roles {
		if _, _, ok := parseRoleARN(r.ARN); !ok {
			errs = append(errs, fmt.Errorf("roles[%d]: %q is not an IAM role ARN", i, r.ARN))
		}
	}
	for i, a := range seed.PodIdentity {
		if a.Namespace == "" || a.ServiceAccount == "" || a.RoleARN == "" {
			errs = append(errs, fmt.Errorf("podIdentity[%d]: namespace, serviceAccount and roleArn are required", i))
		}
	}
	for region, f := range seed.Faults {
		if !(f.Rate >= 0 && f.Rate <= 1) {
			errs = append(errs, fmt.Errorf("faults[%q]: rate must be within 0..1", region))
		}
	}
	if d, err := time.ParseDuration(seed.Latency); seed.Latency != "" && (err != nil || d < 0) {
		errs = append(errs, fmt.Errorf("latency %q: not a duration ≥ 0", seed.Latency))
	}
	if q := seed.Quotas; q != nil {
		if !(q.Scale >= 0) || math.IsInf(q.Scale, 0) {
			errs = append(errs, errors.New("quotas: scale must be a finite number ≥ 0 (0 turns quotas off)"))
		}
		for name, o := range q.Quotas {
			if _, ok := DefaultQuotas[name]; !ok || !(o.Rate > 0) || !(o.Burst >= 0) {
				errs = append(errs, fmt.Errorf("quotas: %q must name a DefaultQuotas entry, with rate > 0 and burst ≥ 0", name))
			}
		}
	}
	if len(seed.JWKS) > 0 {
		if _, err := parseJWKS(seed.JWKS); err != nil {
			errs = append(errs, fmt.Errorf("jwks: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (s *Store) applySeed(seed Seed) (SeedReply, error) {
	if err := seed.check(); err != nil {
		return SeedReply{}, err
	}
	reply := SeedReply{Secrets: make([]SeededSecret, len(seed.Secrets)), Parameters: make([]int64, len(seed.Parameters))}
	for i, sec := range seed.Secrets {
		if sec.Delete {
			s.deleteSecret(sec.Region, sec.Name)
			continue
		}
		r := &reply.Secrets[i]
		r.ARN, r.VersionID = s.CreateSecret(sec.Region, sec.Name, Value{String: sec.Value})
	}
	for i, p := range seed.Parameters {
		reply.Parameters[i] = s.PutParameter(p.Region, p.Name, p.Value, p.Type)
	}
	for _, r := range seed.Roles {
		s.AddRole(r)
	}
	for _, a := range seed.PodIdentity {
		s.AddPodIdentityAssociation(a.Namespace, a.ServiceAccount, a.RoleARN)
	}
	for region, f := range seed.Faults {
		s.SetFault(region, f)
	}
	if seed.Latency != "" {
		d, _ := time.ParseDuration(seed.Latency)
		s.SetLatency(d)
	}
	if seed.Quotas != nil {
		s.SetQuotas(*seed.Quotas)
	}
	if len(seed.JWKS) > 0 {
		return reply, s.TrustJWKS(seed.JWKS) // checked above: cannot fail
	}
	return reply, nil
}

func (s *Store) serveControl(w http.ResponseWriter, r *http.Request) {
	const ct = "application/json"
	switch r.Method + " " + r.URL.Path {
	case "POST " + PathSeed:
		var seed Seed
		d := json.NewDecoder(io.LimitReader(r.Body, maxBody))
		d.DisallowUnknownFields()
		reply, err := SeedReply{}, d.Decode(&seed)
		if err == nil {
			reply, err = s.applySeed(seed)
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, ct, map[string]string{"error": "seed: " + err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, ct, reply)
	case "GET " + PathCalls:
		writeJSON(w, http.StatusOK, ct, s.CallCounts())
	case "GET " + PathHealth:
		writeJSON(w, http.StatusOK, ct, struct{}{})
	default:
		writeJSON(w, http.StatusNotFound, ct, map[string]string{"error": "no control endpoint " + r.Method + " " + r.URL.Path})
	}
}

package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"
)

// Control endpoints (JSON, under /_fake/) let out-of-process e2e tests drive
// the fake the way Go tests call methods. They are never counted and never
// subject to latency or faults.
const (
	PathCalls           = "/_fake/calls"            // GET: map op -> count
	PathCallsReset      = "/_fake/calls/reset"      // POST: zeroes the call and throttle counters
	PathThrottles       = "/_fake/throttles"        // GET: map op -> calls answered as over their quota
	PathQuotas          = "/_fake/quotas"           // POST QuotaConfig ({"scale":0.01}; 0 turns quotas off) -> effective quotas; GET: effective quotas
	PathSecrets         = "/_fake/secrets"          // POST {"region","name","string"|"binaryBase64"} -> {"arn","versionId"}
	PathSecretStage     = "/_fake/secrets/stage"    // POST {"region","name","stage","versionId"}
	PathSecretDelete    = "/_fake/secrets/delete"   // POST {"region","name"}
	PathParameters      = "/_fake/parameters"       // POST {"region","name","value","type"} -> {"version"}
	PathParameterLabels = "/_fake/parameters/label" // POST {"region","name","version","labels"}
	PathRoles           = "/_fake/roles"            // POST Role JSON
	PathPodIdentity     = "/_fake/podidentity"      // POST {"namespace","serviceAccount","roleArn"}
	PathFault           = "/_fake/fault"            // POST {"region","rate","code"}
	PathLatency         = "/_fake/latency"          // POST {"latency":"20ms"}
	PathJWKS            = "/_fake/jwks"             // POST a JWKS document
	PathSeed            = "/_fake/seed"             // POST a Seed document
	PathHealth          = "/_fake/healthz"          // GET: 200 when serving
)

func decodeStrict(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func (s *Store) serveControl(w http.ResponseWriter, r *http.Request) {
	reply := func(v any, err error) {
		if err != nil {
			writeJSON(w, http.StatusBadRequest, "application/json", map[string]string{"error": err.Error()})
			return
		}
		if v == nil {
			v = struct{}{}
		}
		writeJSON(w, http.StatusOK, "application/json", v)
	}
	route := r.Method + " " + r.URL.Path
	switch route {
	case "GET " + PathCalls:
		reply(s.CallCounts(), nil)
	case "GET " + PathThrottles:
		reply(s.ThrottleCounts(), nil)
	case "GET " + PathQuotas:
		reply(orEmpty(s.Quotas()), nil)
	case "POST " + PathQuotas:
		var in QuotaConfig
		if err := decodeStrict(r, &in); err != nil {
			reply(nil, err)
			return
		}
		if in.Scale < 0 || math.IsNaN(in.Scale) || math.IsInf(in.Scale, 0) {
			reply(nil, fmt.Errorf("scale must be a finite number ≥ 0 (0 turns quotas off)"))
			return
		}
		for name, q := range in.Quotas {
			if _, ok := DefaultQuotas[name]; !ok {
				reply(nil, fmt.Errorf("no quota %q", name))
				return
			}
			if q.Rate <= 0 || q.Burst < 0 {
				reply(nil, fmt.Errorf("quota %q: rate must be > 0 and burst ≥ 0", name))
				return
			}
		}
		reply(orEmpty(s.SetQuotas(in)), nil)
	case "GET " + PathHealth:
		reply(nil, nil)
	case "POST " + PathCallsReset:
		s.ResetCalls()
		reply(nil, nil)
	case "POST " + PathSecrets:
		var in SeedSecret
		if err := decodeStrict(r, &in); err != nil {
			reply(nil, err)
			return
		}
		if in.Previous != nil {
			reply(nil, fmt.Errorf("previous is only accepted in seed files; post twice instead"))
			return
		}
		v, err := in.value()
		if err == nil && (in.Region == "" || !validSecretName(in.Name)) {
			err = fmt.Errorf("region and a valid name are required")
		}
		if err != nil {
			reply(nil, err)
			return
		}
		arn, vid := s.CreateSecret(in.Region, in.Name, v)
		reply(map[string]string{"arn": arn, "versionId": vid}, nil)
	case "POST " + PathSecretStage:
		var in struct{ Region, Name, Stage, VersionID string }
		if err := decodeStrict(r, &in); err != nil {
			reply(nil, err)
			return
		}
		reply(nil, s.UpdateSecretVersionStage(in.Region, in.Name, in.Stage, in.VersionID))
	case "POST " + PathSecretDelete:
		var in struct{ Region, Name string }
		if err := decodeStrict(r, &in); err != nil {
			reply(nil, err)
			return
		}
		reply(nil, s.DeleteSecret(in.Region, in.Name))
	case "POST " + PathParameters:
		var in SeedParameter
		if err := decodeStrict(r, &in); err != nil {
			reply(nil, err)
			return
		}
		if in.Region == "" || in.Name == "" || (in.Type != "" && !validType(in.Type)) {
			reply(nil, fmt.Errorf("region and name are required; type must be String, StringList or SecureString"))
			return
		}
		reply(map[string]int64{"version": s.PutParameter(in.Region, in.Name, in.Value, in.Type)}, nil)
	case "POST " + PathParameterLabels:
		var in struct {
			Region, Name string
			Version      int64
			Labels       []string
		}
		if err := decodeStrict(r, &in); err != nil {
			reply(nil, err)
			return
		}
		reply(nil, s.LabelParameterVersion(in.Region, in.Name, in.Version, in.Labels...))
	case "POST " + PathRoles:
		var in Role
		if err := decodeStrict(r, &in); err != nil {
			reply(nil, err)
			return
		}
		if _, _, ok := parseRoleARN(in.ARN); !ok {
			reply(nil, fmt.Errorf("%q is not an IAM role ARN", in.ARN))
			return
		}
		s.AddRole(in)
		reply(nil, nil)
	case "POST " + PathPodIdentity:
		var in SeedPodIdentity
		if err := decodeStrict(r, &in); err != nil {
			reply(nil, err)
			return
		}
		if in.Namespace == "" || in.ServiceAccount == "" || in.RoleARN == "" {
			reply(nil, fmt.Errorf("namespace, serviceAccount and roleArn are required"))
			return
		}
		s.AddPodIdentityAssociation(in.Namespace, in.ServiceAccount, in.RoleARN)
		reply(nil, nil)
	case "POST " + PathFault:
		var in struct {
			Region string  `json:"region"`
			Rate   float64 `json:"rate"`
			Code   string  `json:"code"`
		}
		if err := decodeStrict(r, &in); err != nil {
			reply(nil, err)
			return
		}
		if in.Rate < 0 || in.Rate > 1 {
			reply(nil, fmt.Errorf("rate must be within 0..1"))
			return
		}
		s.SetFault(in.Region, Fault{Rate: in.Rate, Code: in.Code})
		reply(nil, nil)
	case "POST " + PathLatency:
		var in struct {
			Latency string `json:"latency"`
		}
		if err := decodeStrict(r, &in); err != nil {
			reply(nil, err)
			return
		}
		d, err := time.ParseDuration(in.Latency)
		if err == nil && d < 0 {
			err = fmt.Errorf("latency must not be negative")
		}
		if err != nil {
			reply(nil, err)
			return
		}
		s.SetLatency(d)
		reply(nil, nil)
	case "POST " + PathJWKS, "POST " + PathSeed:
		b, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
		if err == nil {
			if route == "POST "+PathJWKS {
				err = s.TrustJWKS(b)
			} else {
				err = s.LoadSeed(b)
			}
		}
		reply(nil, err)
	default:
		writeJSON(w, http.StatusNotFound, "application/json", map[string]string{"error": "no control endpoint " + route})
	}
}

// orEmpty answers no quotas as {} rather than null.
func orEmpty(m map[string]Quota) map[string]Quota {
	if m == nil {
		return map[string]Quota{}
	}
	return m
}

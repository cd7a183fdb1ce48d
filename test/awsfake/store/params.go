package store

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// SSM parameter types.
const (
	typeString       = "String"
	typeStringList   = "StringList"
	typeSecureString = "SecureString"
)

// maxGetParameters is the Names limit of GetParameters.
const maxGetParameters = 10

type parameter struct {
	name     string
	typ      string
	versions []*paramVersion // versions[i].version == i+1
}

type paramVersion struct {
	version int64
	value   string
	labels  []string
}

func validType(t string) bool {
	return t == typeString || t == typeStringList || t == typeSecureString
}

func (s *Store) paramARN(region, name string) string {
	return "arn:aws:ssm:" + region + ":" + s.accountID + ":parameter/" + strings.TrimPrefix(name, "/")
}

// splitSelector splits "name:3" / "name:label" (also on ARNs) into the name
// and the selector including its leading colon.
func splitSelector(n string) (base, sel string) {
	start := 0
	if strings.HasPrefix(n, "arn:") {
		i := strings.Index(n, ":parameter/")
		if i < 0 {
			return n, ""
		}
		start = i + len(":parameter/")
	}
	if j := strings.IndexByte(n[start:], ':'); j >= 0 {
		return n[:start+j], n[start+j:]
	}
	return n, ""
}

// paramName maps a parameter ARN to the stored name: hierarchical names
// keep their leading slash, which ARNs drop. Another region's or account's
// ARN is kept whole, which names no parameter.
func (s *Store) paramName(region, arn string) string {
	rest, ok := strings.CutPrefix(arn, "arn:aws:ssm:"+region+":"+s.accountID+":parameter/")
	if !ok || !strings.Contains(rest, "/") {
		return rest
	}
	return "/" + rest
}

func (s *Store) selectParamLocked(region, nameWithSelector string) (*parameter, *paramVersion, string, bool) {
	base, sel := splitSelector(nameWithSelector)
	if strings.HasPrefix(base, "arn:") {
		base = s.paramName(region, base)
	}
	p := s.params[region][base]
	if p == nil {
		return nil, nil, sel, false
	}
	if sel == "" {
		return p, p.versions[len(p.versions)-1], sel, true
	}
	token := sel[1:]
	if n, err := strconv.ParseInt(token, 10, 64); err == nil {
		if n < 1 || n > int64(len(p.versions)) {
			return nil, nil, sel, false
		}
		return p, p.versions[n-1], sel, true
	}
	for _, v := range p.versions {
		if slices.Contains(v.labels, token) {
			return p, v, sel, true
		}
	}
	return nil, nil, sel, false
}

// PutParameter creates or overwrites name in region and returns the new
// version number (1 for a new parameter). typ is String, StringList or
// SecureString; "" keeps the existing type (String for a new parameter).
// Any other typ panics: it is a bug in the calling test.
func (s *Store) PutParameter(region, name, value, typ string) (version int64) {
	if typ != "" && !validType(typ) {
		panic("awsfake: invalid SSM parameter type " + strconv.Quote(typ))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.params[region] == nil {
		s.params[region] = map[string]*parameter{}
	}
	p := s.params[region][name]
	if p == nil {
		p = &parameter{name: name, typ: typeString}
		s.params[region][name] = p
	}
	if typ != "" {
		p.typ = typ
	}
	v := &paramVersion{version: int64(len(p.versions) + 1), value: value}
	p.versions = append(p.versions, v)
	return v.version
}

// LabelParameterVersion attaches labels to version of name, moving each
// label off any other version of the parameter as SSM does.
func (s *Store) LabelParameterVersion(region, name string, version int64, labels ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.params[region][name]
	if p == nil || version < 1 || version > int64(len(p.versions)) {
		return badRequest("ParameterVersionNotFound", fmt.Sprintf("Systems Manager could not find version %d of %s.", version, name))
	}
	for _, v := range p.versions {
		v.labels = slices.DeleteFunc(v.labels, func(l string) bool { return slices.Contains(labels, l) })
	}
	target := p.versions[version-1]
	target.labels = append(target.labels, labels...)
	return nil
}

// ---- wire operations ----

type ssmParam struct {
	Name     string `json:"Name"`
	Type     string `json:"Type"`
	Value    string `json:"Value"`
	Version  int64  `json:"Version"`
	Selector string `json:"Selector,omitempty"`
	ARN      string `json:"ARN"`
}

func (s *Store) paramOut(region string, p *parameter, v *paramVersion, sel string, decrypt bool) ssmParam {
	val := v.value
	if p.typ == typeSecureString && !decrypt {
		// Stand-in for a KMS ciphertext: derived from name and version only,
		// so a reader that forgets WithDecryption gets no plaintext.
		h := sha256.Sum256([]byte(region + "\x00" + p.name + "\x00" + strconv.FormatInt(v.version, 10)))
		val = base64.StdEncoding.EncodeToString(append([]byte("awsfake-kms-ciphertext:"), h[:]...))
	}
	return ssmParam{Name: p.name, Type: p.typ, Value: val, Version: v.version, Selector: sel, ARN: s.paramARN(region, p.name)}
}

func (s *Store) ssmGetParameters(c *call) (any, *apiError) {
	var in struct {
		Names          []string `json:"Names"`
		WithDecryption bool     `json:"WithDecryption"`
	}
	if e := c.decode(&in); e != nil {
		return nil, e
	}
	if len(in.Names) == 0 || len(in.Names) > maxGetParameters {
		return nil, validation("names", fmt.Sprintf("Member must have length between 1 and %d", maxGetParameters))
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	// One unreadable name denies the whole call, as IAM evaluates the batch;
	// the resource is the name's ARN whether or not the parameter exists.
	for _, n := range in.Names {
		resource, _ := splitSelector(n)
		if !strings.HasPrefix(resource, "arn:") {
			resource = s.paramARN(c.region, resource)
		}
		if e := s.authorizeLocked(c, "ssm:GetParameters", resource); e != nil {
			return nil, e
		}
	}
	out := struct {
		Parameters        []ssmParam `json:"Parameters"`
		InvalidParameters []string   `json:"InvalidParameters"`
	}{}
	seen := map[string]bool{}
	for _, n := range in.Names {
		if seen[n] {
			continue
		}
		seen[n] = true
		p, v, sel, ok := s.selectParamLocked(c.region, n)
		if !ok {
			out.InvalidParameters = append(out.InvalidParameters, n)
			continue
		}
		out.Parameters = append(out.Parameters, s.paramOut(c.region, p, v, sel, in.WithDecryption))
	}
	return out, nil
}

package store

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SSM parameter types.
const (
	TypeString       = "String"
	TypeStringList   = "StringList"
	TypeSecureString = "SecureString"
)

// MaxGetParameters is the Names limit of GetParameters.
const MaxGetParameters = 10

type parameter struct {
	name     string
	typ      string
	versions []*paramVersion // versions[i].version == i+1
}

type paramVersion struct {
	version  int64
	value    string
	modified time.Time
	labels   []string
}

func validType(t string) bool {
	return t == TypeString || t == TypeStringList || t == TypeSecureString
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

// paramName maps a name or parameter ARN to the stored name: hierarchical
// names keep their leading slash, which ARNs drop.
func (s *Store) paramName(region, base string) string {
	if !strings.HasPrefix(base, "arn:") {
		return base
	}
	prefix := "arn:aws:ssm:" + region + ":" + s.accountID + ":parameter/"
	rest, ok := strings.CutPrefix(base, prefix)
	if !ok {
		return base // another region/account: never found
	}
	if strings.Contains(rest, "/") {
		return "/" + rest
	}
	return rest
}

func (s *Store) selectParamLocked(region, nameWithSelector string) (*parameter, *paramVersion, string, *apiError) {
	base, sel := splitSelector(nameWithSelector)
	name := s.paramName(region, base)
	p := s.params[region][name]
	if p == nil {
		return nil, nil, sel, notFound("ParameterNotFound", "Parameter "+nameWithSelector+" not found.")
	}
	if sel == "" {
		return p, p.versions[len(p.versions)-1], sel, nil
	}
	token := sel[1:]
	if n, err := strconv.ParseInt(token, 10, 64); err == nil {
		if n < 1 || n > int64(len(p.versions)) {
			return nil, nil, sel, notFound("ParameterVersionNotFound", fmt.Sprintf("Systems Manager could not find version %d of %s. Verify the version and try again.", n, name))
		}
		return p, p.versions[n-1], sel, nil
	}
	for _, v := range p.versions {
		if slices.Contains(v.labels, token) {
			return p, v, sel, nil
		}
	}
	return nil, nil, sel, notFound("ParameterNotFound", "Parameter "+nameWithSelector+" not found.")
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
	return s.putParamLocked(region, name, value, typ)
}

func (s *Store) putParamLocked(region, name, value, typ string) int64 {
	if s.params[region] == nil {
		s.params[region] = map[string]*parameter{}
	}
	p := s.params[region][name]
	if p == nil {
		if typ == "" {
			typ = TypeString
		}
		p = &parameter{name: name, typ: typ}
		s.params[region][name] = p
	} else if typ != "" {
		p.typ = typ
	}
	v := &paramVersion{version: int64(len(p.versions) + 1), value: value, modified: s.now()}
	p.versions = append(p.versions, v)
	return v.version
}

// DeleteParameter removes a parameter and all its versions.
func (s *Store) DeleteParameter(region, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.params[region][name] == nil {
		return notFound("ParameterNotFound", "Parameter "+name+" not found.")
	}
	delete(s.params[region], name)
	return nil
}

// LabelParameterVersion attaches labels to version (0 = latest), moving each
// label off any other version of the parameter as SSM does. Invalid labels
// (starting with a digit, "aws" or "ssm", bad characters, > 100 chars) or more
// than 10 labels on a version are rejected with an error wrapping ErrInvalid.
func (s *Store) LabelParameterVersion(region, name string, version int64, labels ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	bad, _, e := s.labelLocked(region, name, version, labels)
	if e != nil {
		return e
	}
	if len(bad) > 0 {
		return invalid("ValidationException", "invalid labels: "+strings.Join(bad, ", "))
	}
	return nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 100 {
		return false
	}
	low := strings.ToLower(l)
	if strings.HasPrefix(low, "aws") || strings.HasPrefix(low, "ssm") || (l[0] >= '0' && l[0] <= '9') {
		return false
	}
	for _, r := range l {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

func (s *Store) labelLocked(region, name string, version int64, labels []string) (invalidLabels []string, ver int64, e *apiError) {
	p := s.params[region][s.paramName(region, name)]
	if p == nil {
		return nil, 0, notFound("ParameterNotFound", "Parameter "+name+" not found.")
	}
	if version == 0 {
		version = int64(len(p.versions))
	}
	if version < 1 || version > int64(len(p.versions)) {
		return nil, 0, notFound("ParameterVersionNotFound", fmt.Sprintf("Systems Manager could not find version %d of %s. Verify the version and try again.", version, name))
	}
	target := p.versions[version-1]
	var good []string
	for _, l := range labels {
		if validLabel(l) {
			good = append(good, l)
		} else {
			invalidLabels = append(invalidLabels, l)
		}
	}
	merged := slices.Clone(target.labels)
	for _, l := range good {
		if !slices.Contains(merged, l) {
			merged = append(merged, l)
		}
	}
	if len(merged) > 10 {
		return nil, 0, &apiError{status: 400, code: "ParameterVersionLabelLimitExceeded", msg: "A parameter version can have a maximum of ten labels.", kind: ErrInvalid}
	}
	for _, v := range p.versions {
		if v != target {
			v.labels = slices.DeleteFunc(v.labels, func(x string) bool { return slices.Contains(good, x) })
		}
	}
	target.labels = merged
	return invalidLabels, version, nil
}

// ---- wire operations ----

type ssmParam struct {
	Name             string `json:"Name"`
	Type             string `json:"Type"`
	Value            string `json:"Value"`
	Version          int64  `json:"Version"`
	Selector         string `json:"Selector,omitempty"`
	LastModifiedDate epoch  `json:"LastModifiedDate"`
	ARN              string `json:"ARN"`
	DataType         string `json:"DataType"`
}

func (s *Store) paramOut(region string, p *parameter, v *paramVersion, sel string, decrypt bool) ssmParam {
	val := v.value
	if p.typ == TypeSecureString && !decrypt {
		// Stand-in for a KMS ciphertext: derived from name and version only,
		// so the plaintext never leaves the fake unless asked for.
		h := sha256.Sum256([]byte(region + "\x00" + p.name + "\x00" + strconv.FormatInt(v.version, 10)))
		val = base64.StdEncoding.EncodeToString(append([]byte("awsfake-kms-ciphertext:"), h[:]...))
	}
	return ssmParam{Name: p.name, Type: p.typ, Value: val, Version: v.version, Selector: sel,
		LastModifiedDate: epoch(v.modified), ARN: s.paramARN(region, p.name), DataType: "text"}
}

// paramResource is the ARN IAM evaluates for a requested name (selector
// stripped), whether or not the parameter exists.
func (s *Store) paramResource(region, n string) string {
	base, _ := splitSelector(n)
	if strings.HasPrefix(base, "arn:") {
		return base
	}
	return s.paramARN(region, base)
}

func (s *Store) ssmGetParameters(c *call) (any, *apiError) {
	var in struct {
		Names          []string `json:"Names"`
		WithDecryption bool     `json:"WithDecryption"`
	}
	if e := c.decode(&in); e != nil {
		return nil, e
	}
	if len(in.Names) == 0 {
		return nil, validation("names", "Member must have length greater than or equal to 1")
	}
	if len(in.Names) > MaxGetParameters {
		return nil, validation("names", fmt.Sprintf("Member must have length less than or equal to %d", MaxGetParameters))
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	// One unreadable name denies the whole call, as IAM evaluates the batch.
	for _, n := range in.Names {
		if e := s.authorizeLocked(c, "ssm:GetParameters", s.paramResource(c.region, n)); e != nil {
			return nil, e
		}
	}
	out := struct {
		Parameters        []ssmParam `json:"Parameters"`
		InvalidParameters []string   `json:"InvalidParameters"`
	}{Parameters: []ssmParam{}, InvalidParameters: []string{}}
	seen := map[string]bool{}
	for _, n := range in.Names {
		if seen[n] {
			continue
		}
		seen[n] = true
		p, v, sel, e := s.selectParamLocked(c.region, n)
		if e != nil {
			out.InvalidParameters = append(out.InvalidParameters, n)
			continue
		}
		out.Parameters = append(out.Parameters, s.paramOut(c.region, p, v, sel, in.WithDecryption))
	}
	return out, nil
}

func (s *Store) ssmGetParameter(c *call) (any, *apiError) {
	var in struct {
		Name           string `json:"Name"`
		WithDecryption bool   `json:"WithDecryption"`
	}
	if e := c.decode(&in); e != nil {
		return nil, e
	}
	if in.Name == "" {
		return nil, validation("name", "Member must not be null")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	c.resource = s.paramResource(c.region, in.Name)
	if e := s.authorizeLocked(c, "ssm:GetParameter", c.resource); e != nil {
		return nil, e
	}
	p, v, sel, e := s.selectParamLocked(c.region, in.Name)
	if e != nil {
		return nil, e
	}
	return struct {
		Parameter ssmParam `json:"Parameter"`
	}{s.paramOut(c.region, p, v, sel, in.WithDecryption)}, nil
}

func (s *Store) ssmPutParameter(c *call) (any, *apiError) {
	var in struct {
		Name      string `json:"Name"`
		Value     string `json:"Value"`
		Type      string `json:"Type"`
		Overwrite bool   `json:"Overwrite"`
	}
	if e := c.decode(&in); e != nil {
		return nil, e
	}
	if in.Name == "" || len(in.Name) > 2048 || strings.ContainsRune(in.Name, ':') {
		return nil, validation("name", "Member must satisfy the parameter name constraints")
	}
	if in.Type != "" && !validType(in.Type) {
		return nil, validation("type", "Member must satisfy enum value set: [SecureString, StringList, String]")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c.resource = s.paramARN(c.region, in.Name)
	if e := s.authorizeLocked(c, "ssm:PutParameter", c.resource); e != nil {
		return nil, e
	}
	exists := s.params[c.region][in.Name] != nil
	if exists && !in.Overwrite {
		return nil, &apiError{status: 400, code: "ParameterAlreadyExists", msg: "The parameter already exists. To overwrite this value, set the overwrite option in the request to true."}
	}
	if !exists && in.Type == "" {
		return nil, invalid("ValidationException", "A parameter type is required when you create a parameter.")
	}
	ver := s.putParamLocked(c.region, in.Name, in.Value, in.Type)
	return struct {
		Version int64  `json:"Version"`
		Tier    string `json:"Tier"`
	}{ver, "Standard"}, nil
}

func (s *Store) ssmDeleteParameter(c *call) (any, *apiError) {
	var in struct {
		Name string `json:"Name"`
	}
	if e := c.decode(&in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name := s.paramName(c.region, in.Name)
	c.resource = s.paramARN(c.region, name)
	if e := s.authorizeLocked(c, "ssm:DeleteParameter", c.resource); e != nil {
		return nil, e
	}
	if s.params[c.region][name] == nil {
		return nil, notFound("ParameterNotFound", "Parameter "+in.Name+" not found.")
	}
	delete(s.params[c.region], name)
	return struct{}{}, nil
}

func (s *Store) ssmLabelParameterVersion(c *call) (any, *apiError) {
	var in struct {
		Name             string   `json:"Name"`
		ParameterVersion int64    `json:"ParameterVersion"`
		Labels           []string `json:"Labels"`
	}
	if e := c.decode(&in); e != nil {
		return nil, e
	}
	if len(in.Labels) == 0 {
		return nil, validation("labels", "Member must have length greater than or equal to 1")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c.resource = s.paramResource(c.region, in.Name)
	if e := s.authorizeLocked(c, "ssm:LabelParameterVersion", c.resource); e != nil {
		return nil, e
	}
	bad, ver, e := s.labelLocked(c.region, in.Name, in.ParameterVersion, in.Labels)
	if e != nil {
		return nil, e
	}
	if bad == nil {
		bad = []string{}
	}
	return struct {
		InvalidLabels    []string `json:"InvalidLabels"`
		ParameterVersion int64    `json:"ParameterVersion"`
	}{bad, ver}, nil
}

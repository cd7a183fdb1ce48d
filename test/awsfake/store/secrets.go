package store

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Secrets Manager staging labels the fake moves by itself.
const (
	stageCurrent  = "AWSCURRENT"
	stagePrevious = "AWSPREVIOUS"
)

// maxBatchSecrets is the SecretIdList limit of BatchGetSecretValue.
const maxBatchSecrets = 20

// Value is a secret value. Secrets Manager stores either a string or a binary
// blob per version; Binary != nil selects the binary form (even if empty).
type Value struct {
	String string
	Binary []byte
}

type secret struct {
	name, arn string
	versions  map[string]*secretVersion
}

type secretVersion struct {
	id     string
	value  Value
	stages []string
}

func (sec *secret) holder(stage string) *secretVersion {
	for _, v := range sec.versions {
		if slices.Contains(v.stages, stage) {
			return v
		}
	}
	return nil
}

// moveStage attaches stage to `to`, detaching it from its previous holder.
// Moving AWSCURRENT hands AWSPREVIOUS to the old current version, which is
// what Secrets Manager does on every rotation.
func (sec *secret) moveStage(stage string, to *secretVersion) {
	from := sec.holder(stage)
	if from == to {
		return
	}
	if from != nil {
		from.stages = slices.DeleteFunc(from.stages, func(s string) bool { return s == stage })
	}
	to.stages = append(to.stages, stage)
	if stage == stageCurrent && from != nil {
		sec.moveStage(stagePrevious, from)
	}
}

func (s *Store) secretPrefix(region string) string {
	return "arn:aws:secretsmanager:" + region + ":" + s.accountID + ":secret:"
}

// findSecretLocked resolves a name, full ARN or partial ARN (no random
// suffix) in region.
func (s *Store) findSecretLocked(region, id string) *secret {
	m := s.secrets[region]
	rest, ok := strings.CutPrefix(id, s.secretPrefix(region))
	if !ok {
		if strings.HasPrefix(id, "arn:") {
			return nil
		}
		return m[id]
	}
	if n := len(rest) - 7; n > 0 && rest[n] == '-' {
		if sec := m[rest[:n]]; sec != nil && sec.arn == id {
			return sec
		}
	}
	return m[rest]
}

// newVersionLocked adds v to sec as its AWSCURRENT version.
func newVersionLocked(sec *secret, v Value) *secretVersion {
	if v.Binary != nil {
		v.Binary = bytes.Clone(v.Binary)
	}
	ver := &secretVersion{id: newUUID(), value: v}
	sec.versions[ver.id] = ver
	sec.moveStage(stageCurrent, ver)
	return ver
}

// CreateSecret creates name in region with v as its AWSCURRENT version and
// returns the minted ARN (with AWS's random 6-character suffix) and version
// ID. If the secret already exists it behaves like PutSecretValue, so seeding
// helpers can be called repeatedly.
func (s *Store) CreateSecret(region, name string, v Value) (arn, versionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.secrets[region][name]
	if sec == nil {
		sec = &secret{name: name, arn: s.secretPrefix(region) + name + "-" + randomString(alnum, 6), versions: map[string]*secretVersion{}}
		if s.secrets[region] == nil {
			s.secrets[region] = map[string]*secret{}
		}
		s.secrets[region][name] = sec
	}
	return sec.arn, newVersionLocked(sec, v).id
}

// PutSecretValue adds a new version that becomes AWSCURRENT; the previous
// AWSCURRENT version becomes AWSPREVIOUS. nameOrARN may be a name, full ARN
// or partial ARN; a missing secret is an error.
func (s *Store) PutSecretValue(region, nameOrARN string, v Value) (versionID string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.findSecretLocked(region, nameOrARN)
	if sec == nil {
		return "", secretNotFound()
	}
	return newVersionLocked(sec, v).id, nil
}

// deleteSecret removes the secret with every version, as
// ForceDeleteWithoutRecovery does: its ARN resolves no more, and its name
// can be created again with a new ARN.
func (s *Store) deleteSecret(region, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.secrets[region], name)
}

func secretNotFound() *apiError {
	return badRequest("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
}

// ---- wire operations ----

type smSecretValue struct {
	ARN          string  `json:"ARN"`
	Name         string  `json:"Name"`
	VersionID    string  `json:"VersionId"`
	SecretString *string `json:"SecretString,omitempty"`
	SecretBinary *[]byte `json:"SecretBinary,omitempty"` // pointer: an empty blob is still sent
}

func secretValueOut(sec *secret, v *secretVersion) smSecretValue {
	out := smSecretValue{ARN: sec.arn, Name: sec.name, VersionID: v.id}
	if v.value.Binary != nil {
		out.SecretBinary = &v.value.Binary
	} else {
		out.SecretString = &v.value.String
	}
	return out
}

// readableSecretLocked resolves id for a wire call, checking authorization
// before existence so callers without access cannot probe for names.
func (s *Store) readableSecretLocked(c *call, action, id string) (*secret, *apiError) {
	if id == "" {
		return nil, validation("secretId", "Member must not be null")
	}
	sec := s.findSecretLocked(c.region, id)
	// AWS evaluates the ARN the caller named when the secret does not exist.
	resource := id
	if sec != nil {
		resource = sec.arn
	} else if !strings.HasPrefix(id, "arn:") {
		resource = s.secretPrefix(c.region) + id
	}
	if e := s.authorizeLocked(c, "secretsmanager:"+action, resource); e != nil {
		return nil, e
	}
	if sec == nil {
		return nil, secretNotFound()
	}
	return sec, nil
}

func selectVersion(sec *secret, versionID, stage string) (*secretVersion, *apiError) {
	if versionID != "" {
		v := sec.versions[versionID]
		if v == nil || stage != "" && !slices.Contains(v.stages, stage) {
			return nil, badRequest("ResourceNotFoundException", fmt.Sprintf("Secrets Manager can't find the specified secret value for VersionId: %s and staging label: %s", versionID, stage))
		}
		return v, nil
	}
	if stage == "" {
		stage = stageCurrent
	}
	v := sec.holder(stage)
	if v == nil {
		return nil, badRequest("ResourceNotFoundException", "Secrets Manager can't find the specified secret value for staging label: "+stage)
	}
	return v, nil
}

func (s *Store) smGetSecretValue(c *call) (any, *apiError) {
	var in struct {
		SecretID     string `json:"SecretId"`
		VersionID    string `json:"VersionId"`
		VersionStage string `json:"VersionStage"`
	}
	if e := c.decode(&in); e != nil {
		return nil, e
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	sec, e := s.readableSecretLocked(c, "GetSecretValue", in.SecretID)
	if e != nil {
		return nil, e
	}
	c.resource = sec.arn
	v, e := selectVersion(sec, in.VersionID, in.VersionStage)
	if e != nil {
		return nil, e
	}
	return secretValueOut(sec, v), nil
}

// smBatchGetSecretValue answers the SecretIdList form the driver sends, in
// one page; the Filters form is not modelled.
func (s *Store) smBatchGetSecretValue(c *call) (any, *apiError) {
	var in struct {
		SecretIDList []string `json:"SecretIdList"`
	}
	if e := c.decode(&in); e != nil {
		return nil, e
	}
	if len(in.SecretIDList) == 0 {
		return nil, badRequest("InvalidParameterException", "awsfake answers BatchGetSecretValue with a SecretIdList only.")
	}
	if len(in.SecretIDList) > maxBatchSecrets {
		return nil, validation("secretIdList", fmt.Sprintf("Member must have length less than or equal to %d", maxBatchSecrets))
	}
	type batchError struct {
		SecretID  string `json:"SecretId"`
		ErrorCode string `json:"ErrorCode"`
		Message   string `json:"Message"`
	}
	var out struct {
		SecretValues []smSecretValue `json:"SecretValues"`
		Errors       []batchError    `json:"Errors"`
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, id := range in.SecretIDList {
		sec, e := s.readableSecretLocked(c, "GetSecretValue", id)
		var v *secretVersion
		if e == nil {
			v, e = selectVersion(sec, "", stageCurrent)
		}
		if e != nil {
			out.Errors = append(out.Errors, batchError{id, e.code, e.msg})
			continue
		}
		out.SecretValues = append(out.SecretValues, secretValueOut(sec, v))
	}
	return out, nil
}

func (s *Store) smDescribeSecret(c *call) (any, *apiError) {
	var in struct {
		SecretID string `json:"SecretId"`
	}
	if e := c.decode(&in); e != nil {
		return nil, e
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	sec, e := s.readableSecretLocked(c, "DescribeSecret", in.SecretID)
	if e != nil {
		return nil, e
	}
	c.resource = sec.arn
	stages := map[string][]string{}
	for id, v := range sec.versions {
		if len(v.stages) > 0 {
			stages[id] = slices.Clone(v.stages) // encoded after the lock is released
		}
	}
	return struct {
		ARN                string              `json:"ARN"`
		Name               string              `json:"Name"`
		VersionIdsToStages map[string][]string `json:"VersionIdsToStages"`
	}{sec.arn, sec.name, stages}, nil
}

package store

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Secrets Manager staging labels with built-in meaning.
const (
	StageCurrent  = "AWSCURRENT"
	StagePrevious = "AWSPREVIOUS"
	StagePending  = "AWSPENDING"
)

// Value is a secret value. Secrets Manager stores either a string or a binary
// blob per version; Binary != nil selects the binary form (even if empty).
type Value struct {
	String string
	Binary []byte
}

func (v Value) clone() Value {
	if v.Binary != nil {
		return Value{Binary: bytes.Clone(v.Binary)}
	}
	return Value{String: v.String}
}

func (v Value) equal(o Value) bool {
	if (v.Binary != nil) != (o.Binary != nil) {
		return false
	}
	if v.Binary != nil {
		return bytes.Equal(v.Binary, o.Binary)
	}
	return v.String == o.String
}

type secret struct {
	name, arn string
	created   time.Time
	changed   time.Time
	deleted   time.Time // non-zero: scheduled for deletion, unreadable
	versions  map[string]*secretVersion
}

type secretVersion struct {
	id      string
	value   Value
	created time.Time
	stages  []string
}

// SecretInfo is a read-only snapshot of a secret's metadata, for assertions.
type SecretInfo struct {
	ARN  string
	Name string
	// Versions maps every version ID (including deprecated versions with no
	// stages) to its staging labels.
	Versions map[string][]string
	// ScheduledForDeletion is true after a DeleteSecret call with a recovery
	// window; the secret is then unreadable but still occupies its name.
	ScheduledForDeletion bool
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
	if stage == StageCurrent && from != nil {
		sec.moveStage(StagePrevious, from)
	}
}

func (s *Store) secretPrefix(region string) string {
	return "arn:aws:secretsmanager:" + region + ":" + s.accountID + ":secret:"
}

// findSecretLocked resolves a name, full ARN or partial ARN (no random
// suffix) in region.
func (s *Store) findSecretLocked(region, id string) *secret {
	m := s.secrets[region]
	if !strings.HasPrefix(id, "arn:") {
		return m[id]
	}
	prefix := s.secretPrefix(region)
	if !strings.HasPrefix(id, prefix) {
		return nil
	}
	rest := id[len(prefix):]
	if n := len(rest) - 7; n > 0 && rest[n] == '-' {
		if sec := m[rest[:n]]; sec != nil && sec.arn == id {
			return sec
		}
	}
	return m[rest]
}

// secretResource is the ARN IAM evaluates for id when the secret does not
// exist (AWS answers AccessDenied rather than leaking non-existence).
func (s *Store) secretResource(region, id string) string {
	if strings.HasPrefix(id, "arn:") {
		return id
	}
	return s.secretPrefix(region) + id
}

func (s *Store) newSecretLocked(region, name string) *secret {
	now := s.now()
	sec := &secret{
		name:     name,
		arn:      s.secretPrefix(region) + name + "-" + randomString(alnum, 6),
		created:  now,
		changed:  now,
		versions: map[string]*secretVersion{},
	}
	if s.secrets[region] == nil {
		s.secrets[region] = map[string]*secret{}
	}
	s.secrets[region][name] = sec
	return sec
}

// putVersionLocked adds a version. An existing versionID is accepted again
// only with the same value (ClientRequestToken idempotency), as AWS does.
func (s *Store) putVersionLocked(sec *secret, v Value, versionID string, stages []string) (*secretVersion, *apiError) {
	if versionID == "" {
		versionID = newUUID()
	}
	if old, ok := sec.versions[versionID]; ok {
		if old.value.equal(v) {
			return old, nil
		}
		return nil, &apiError{status: 400, code: "ResourceExistsException",
			msg: "You can't modify an existing version, you can only create a new version."}
	}
	if len(stages) == 0 {
		stages = []string{StageCurrent}
	}
	now := s.now()
	ver := &secretVersion{id: versionID, value: v.clone(), created: now}
	sec.versions[versionID] = ver
	for _, st := range stages {
		sec.moveStage(st, ver)
	}
	sec.changed = now
	return ver, nil
}

// CreateSecret creates name in region with v as its AWSCURRENT version and
// returns the minted ARN (with AWS's random 6-character suffix) and version
// ID. If the secret already exists it behaves like PutSecretValue, so seeding
// helpers can be called repeatedly; a secret scheduled for deletion is
// replaced by a fresh one with a new ARN.
func (s *Store) CreateSecret(region, name string, v Value) (arn, versionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.secrets[region][name]
	if sec == nil || !sec.deleted.IsZero() {
		sec = s.newSecretLocked(region, name)
	}
	ver, _ := s.putVersionLocked(sec, v, "", nil) // fresh UUID: cannot collide
	return sec.arn, ver.id
}

// PutSecretValue adds a new version that becomes AWSCURRENT; the previous
// AWSCURRENT version becomes AWSPREVIOUS. nameOrARN may be a name, full ARN
// or partial ARN. Errors wrap ErrNotFound or ErrInvalid.
func (s *Store) PutSecretValue(region, nameOrARN string, v Value) (versionID string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, e := s.liveSecretLocked(region, nameOrARN)
	if e != nil {
		return "", e
	}
	ver, e := s.putVersionLocked(sec, v, "", nil)
	if e != nil {
		return "", e
	}
	return ver.id, nil
}

// UpdateSecretVersionStage moves stage to moveToVersionID, detaching it from
// whichever version held it (so unlike the AWS API no RemoveFromVersionId is
// needed). Moving AWSCURRENT makes the old current version AWSPREVIOUS.
func (s *Store) UpdateSecretVersionStage(region, nameOrARN, stage, moveToVersionID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, e := s.liveSecretLocked(region, nameOrARN)
	if e != nil {
		return e
	}
	if stage == "" {
		return invalid("InvalidParameterException", "VersionStage must not be empty")
	}
	to := sec.versions[moveToVersionID]
	if to == nil {
		return notFound("ResourceNotFoundException", fmt.Sprintf("Secrets Manager can't find the specified secret version: %s", moveToVersionID))
	}
	sec.moveStage(stage, to)
	sec.changed = s.now()
	return nil
}

// DeleteSecret removes the secret immediately (like ForceDeleteWithoutRecovery),
// so later reads get ResourceNotFoundException and the name can be reused
// with a new ARN.
func (s *Store) DeleteSecret(region, nameOrARN string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.findSecretLocked(region, nameOrARN)
	if sec == nil {
		return notFound("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
	}
	delete(s.secrets[region], sec.name)
	return nil
}

// Secret returns metadata about a secret (by name, full or partial ARN).
func (s *Store) Secret(region, nameOrARN string) (SecretInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sec := s.findSecretLocked(region, nameOrARN)
	if sec == nil {
		return SecretInfo{}, false
	}
	info := SecretInfo{ARN: sec.arn, Name: sec.name, Versions: map[string][]string{}, ScheduledForDeletion: !sec.deleted.IsZero()}
	for id, v := range sec.versions {
		info.Versions[id] = slices.Clone(v.stages)
	}
	return info, true
}

func (s *Store) liveSecretLocked(region, id string) (*secret, *apiError) {
	sec := s.findSecretLocked(region, id)
	if sec == nil {
		return nil, notFound("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
	}
	if !sec.deleted.IsZero() {
		return nil, invalid("InvalidRequestException", "You can't perform this operation on the secret because it was marked for deletion.")
	}
	return sec, nil
}

// ---- wire operations ----

type epoch time.Time

// MarshalJSON writes epoch seconds as a number, the only timestamp form the
// SDK's awsJson1.1 decoder accepts.
func (e epoch) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(time.Time(e).UnixMilli())/1000, 'f', -1, 64)), nil
}

func epochPtr(t time.Time) *epoch {
	if t.IsZero() {
		return nil
	}
	e := epoch(t)
	return &e
}

type smSecretValue struct {
	ARN           string   `json:"ARN"`
	Name          string   `json:"Name"`
	VersionID     string   `json:"VersionId"`
	VersionStages []string `json:"VersionStages"`
	SecretString  *string  `json:"SecretString,omitempty"`
	SecretBinary  *[]byte  `json:"SecretBinary,omitempty"` // pointer: an empty blob is still sent
	CreatedDate   epoch    `json:"CreatedDate"`
}

func secretValueOut(sec *secret, v *secretVersion) smSecretValue {
	out := smSecretValue{ARN: sec.arn, Name: sec.name, VersionID: v.id, VersionStages: slices.Clone(v.stages), CreatedDate: epoch(v.created)}
	if v.value.Binary != nil {
		b := bytes.Clone(v.value.Binary)
		out.SecretBinary = &b
	} else {
		str := v.value.String
		out.SecretString = &str
	}
	sort.Strings(out.VersionStages)
	return out
}

// readableSecretLocked resolves id for a wire call, checking authorization
// before existence so callers without access cannot probe for names.
func (s *Store) readableSecretLocked(c *call, action, id string) (*secret, *apiError) {
	if id == "" {
		return nil, validation("secretId", "Member must not be null")
	}
	sec := s.findSecretLocked(c.region, id)
	resource := s.secretResource(c.region, id)
	if sec != nil {
		resource = sec.arn
	}
	if e := s.authorizeLocked(c, "secretsmanager:"+action, resource); e != nil {
		return nil, e
	}
	if sec == nil {
		return nil, notFound("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
	}
	return sec, nil
}

func (s *Store) liveReadableSecretLocked(c *call, action, id string) (*secret, *apiError) {
	sec, e := s.readableSecretLocked(c, action, id)
	if e != nil {
		return nil, e
	}
	if !sec.deleted.IsZero() {
		return nil, invalid("InvalidRequestException", "You can't perform this operation on the secret because it was marked for deletion.")
	}
	return sec, nil
}

func selectVersion(sec *secret, versionID, stage string) (*secretVersion, *apiError) {
	if versionID != "" {
		v := sec.versions[versionID]
		if v == nil {
			return nil, notFound("ResourceNotFoundException", "Secrets Manager can't find the specified secret value for VersionId: "+versionID)
		}
		if stage != "" && !slices.Contains(v.stages, stage) {
			return nil, notFound("ResourceNotFoundException", "Secrets Manager can't find the specified secret value for VersionId: "+versionID+" and staging label: "+stage)
		}
		return v, nil
	}
	if stage == "" {
		stage = StageCurrent
	}
	v := sec.holder(stage)
	if v == nil {
		return nil, notFound("ResourceNotFoundException", "Secrets Manager can't find the specified secret value for staging label: "+stage)
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
	sec, e := s.liveReadableSecretLocked(c, "GetSecretValue", in.SecretID)
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

// MaxBatchSecrets is the SecretIdList limit of BatchGetSecretValue.
const MaxBatchSecrets = 20

type smBatchError struct {
	SecretID  string `json:"SecretId"`
	ErrorCode string `json:"ErrorCode"`
	Message   string `json:"Message"`
}

func (s *Store) smBatchGetSecretValue(c *call) (any, *apiError) {
	var in struct {
		SecretIDList []string `json:"SecretIdList"`
		Filters      []struct {
			Key    string   `json:"Key"`
			Values []string `json:"Values"`
		} `json:"Filters"`
		MaxResults *int   `json:"MaxResults"`
		NextToken  string `json:"NextToken"`
	}
	if e := c.decode(&in); e != nil {
		return nil, e
	}
	if (len(in.SecretIDList) == 0) == (len(in.Filters) == 0) {
		return nil, invalid("InvalidParameterException", "Either SecretIdList or Filters must be specified, but not both.")
	}
	if len(in.SecretIDList) > MaxBatchSecrets {
		return nil, validation("secretIdList", fmt.Sprintf("Member must have length less than or equal to %d", MaxBatchSecrets))
	}
	type out struct {
		SecretValues []smSecretValue `json:"SecretValues"`
		Errors       []smBatchError  `json:"Errors"`
		NextToken    string          `json:"NextToken,omitempty"`
	}
	res := out{SecretValues: []smSecretValue{}, Errors: []smBatchError{}}
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := in.SecretIDList
	if len(in.Filters) > 0 {
		max := MaxBatchSecrets
		if in.MaxResults != nil {
			if *in.MaxResults < 1 || *in.MaxResults > MaxBatchSecrets {
				return nil, validation("maxResults", fmt.Sprintf("Member must have value between 1 and %d", MaxBatchSecrets))
			}
			max = *in.MaxResults
		}
		var names []string
		for _, name := range sortedKeys(s.secrets[c.region]) {
			sec := s.secrets[c.region][name]
			if !sec.deleted.IsZero() {
				continue
			}
			ok := true
			for _, f := range in.Filters {
				m, e := filterMatches(f.Key, f.Values, name)
				if e != nil {
					return nil, e
				}
				ok = ok && m
			}
			if ok {
				names = append(names, name)
			}
		}
		start := 0
		if in.NextToken != "" {
			n, err := strconv.Atoi(in.NextToken)
			if err != nil || n < 0 || n > len(names) {
				return nil, invalid("InvalidNextTokenException", "The NextToken value is invalid.")
			}
			start = n
		}
		end := min(start+max, len(names))
		ids = names[start:end]
		if end < len(names) {
			res.NextToken = strconv.Itoa(end)
		}
	}
	for _, id := range ids {
		sec, e := s.liveReadableSecretLocked(c, "GetSecretValue", id)
		var v *secretVersion
		if e == nil {
			v, e = selectVersion(sec, "", StageCurrent)
		}
		if e != nil {
			res.Errors = append(res.Errors, smBatchError{SecretID: id, ErrorCode: e.code, Message: e.msg})
			continue
		}
		res.SecretValues = append(res.SecretValues, secretValueOut(sec, v))
	}
	return res, nil
}

// filterMatches implements the "name" and "all" BatchGetSecretValue filters
// (prefix match, "!" negates); there are no tags or descriptions to match.
func filterMatches(key string, values []string, name string) (bool, *apiError) {
	switch key {
	case "name", "all":
	default:
		return false, invalid("InvalidParameterException", "awsfake supports only the name and all filters, not "+key)
	}
	for _, v := range values {
		if neg, ok := strings.CutPrefix(v, "!"); ok {
			if !strings.HasPrefix(name, neg) {
				return true, nil
			}
		} else if strings.HasPrefix(name, v) {
			return true, nil
		}
	}
	return false, nil
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
			st := slices.Clone(v.stages)
			sort.Strings(st)
			stages[id] = st
		}
	}
	return struct {
		ARN                string              `json:"ARN"`
		Name               string              `json:"Name"`
		CreatedDate        epoch               `json:"CreatedDate"`
		LastChangedDate    epoch               `json:"LastChangedDate"`
		DeletedDate        *epoch              `json:"DeletedDate,omitempty"`
		VersionIdsToStages map[string][]string `json:"VersionIdsToStages"`
	}{sec.arn, sec.name, epoch(sec.created), epoch(sec.changed), epochPtr(sec.deleted), stages}, nil
}

type smWriteIn struct {
	SecretID           string   `json:"SecretId"`
	Name               string   `json:"Name"`
	ClientRequestToken string   `json:"ClientRequestToken"`
	SecretString       *string  `json:"SecretString"`
	SecretBinary       []byte   `json:"SecretBinary"`
	VersionStages      []string `json:"VersionStages"`
}

func (in smWriteIn) value(required bool) (Value, bool, *apiError) {
	switch {
	case in.SecretString != nil && in.SecretBinary != nil:
		return Value{}, false, invalid("InvalidParameterException", "You can't specify both SecretString and SecretBinary.")
	case in.SecretString != nil:
		return Value{String: *in.SecretString}, true, nil
	case in.SecretBinary != nil:
		return Value{Binary: in.SecretBinary}, true, nil
	case required:
		return Value{}, false, invalid("InvalidParameterException", "You must provide either SecretString or SecretBinary.")
	}
	return Value{}, false, nil
}

func validSecretName(name string) bool {
	if name == "" || len(name) > 512 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/_+=.@-!", r)) {
			return false
		}
	}
	return true
}

func (s *Store) smCreateSecret(c *call) (any, *apiError) {
	var in smWriteIn
	if e := c.decode(&in); e != nil {
		return nil, e
	}
	if !validSecretName(in.Name) {
		return nil, invalid("InvalidParameterException", "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!")
	}
	v, hasValue, e := in.value(false)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.authorizeLocked(c, "secretsmanager:CreateSecret", s.secretPrefix(c.region)+in.Name); e != nil {
		return nil, e
	}
	if old := s.secrets[c.region][in.Name]; old != nil {
		if !old.deleted.IsZero() {
			return nil, invalid("InvalidRequestException", "You can't create this secret because a secret with this name is already scheduled for deletion.")
		}
		return nil, &apiError{status: 400, code: "ResourceExistsException", msg: fmt.Sprintf("The operation failed because the secret %s already exists.", in.Name)}
	}
	sec := s.newSecretLocked(c.region, in.Name)
	c.resource = sec.arn
	out := struct {
		ARN       string `json:"ARN"`
		Name      string `json:"Name"`
		VersionID string `json:"VersionId,omitempty"`
	}{ARN: sec.arn, Name: sec.name}
	if hasValue {
		ver, e := s.putVersionLocked(sec, v, in.ClientRequestToken, nil)
		if e != nil {
			return nil, e
		}
		out.VersionID = ver.id
	}
	return out, nil
}

func (s *Store) smPutSecretValue(c *call) (any, *apiError) {
	var in smWriteIn
	if e := c.decode(&in); e != nil {
		return nil, e
	}
	v, _, e := in.value(true)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, e := s.liveReadableSecretLocked(c, "PutSecretValue", in.SecretID)
	if e != nil {
		return nil, e
	}
	c.resource = sec.arn
	ver, e := s.putVersionLocked(sec, v, in.ClientRequestToken, in.VersionStages)
	if e != nil {
		return nil, e
	}
	st := slices.Clone(ver.stages)
	sort.Strings(st)
	return struct {
		ARN           string   `json:"ARN"`
		Name          string   `json:"Name"`
		VersionID     string   `json:"VersionId"`
		VersionStages []string `json:"VersionStages"`
	}{sec.arn, sec.name, ver.id, st}, nil
}

func (s *Store) smUpdateSecretVersionStage(c *call) (any, *apiError) {
	var in struct {
		SecretID            string `json:"SecretId"`
		VersionStage        string `json:"VersionStage"`
		MoveToVersionID     string `json:"MoveToVersionId"`
		RemoveFromVersionID string `json:"RemoveFromVersionId"`
	}
	if e := c.decode(&in); e != nil {
		return nil, e
	}
	if in.VersionStage == "" {
		return nil, validation("versionStage", "Member must not be null")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, e := s.liveReadableSecretLocked(c, "UpdateSecretVersionStage", in.SecretID)
	if e != nil {
		return nil, e
	}
	c.resource = sec.arn
	holder := sec.holder(in.VersionStage)
	if in.RemoveFromVersionID != "" && (holder == nil || holder.id != in.RemoveFromVersionID) {
		return nil, invalid("InvalidParameterException", fmt.Sprintf("The staging label %s is not attached to version %s.", in.VersionStage, in.RemoveFromVersionID))
	}
	switch {
	case in.MoveToVersionID != "":
		to := sec.versions[in.MoveToVersionID]
		if to == nil {
			return nil, notFound("ResourceNotFoundException", "Secrets Manager can't find the specified secret version: "+in.MoveToVersionID)
		}
		if holder != nil && holder != to && in.RemoveFromVersionID == "" {
			return nil, invalid("InvalidParameterException", fmt.Sprintf("The staging label %s is currently attached to version %s, so you must explicitly reference that version in RemoveFromVersionId.", in.VersionStage, holder.id))
		}
		sec.moveStage(in.VersionStage, to)
	case in.RemoveFromVersionID != "":
		if in.VersionStage == StageCurrent {
			return nil, invalid("InvalidParameterException", "You can only move staging label AWSCURRENT to a different secret version. It can't be completely removed.")
		}
		holder.stages = slices.DeleteFunc(holder.stages, func(s string) bool { return s == in.VersionStage })
	default:
		return nil, invalid("InvalidParameterException", "You must specify MoveToVersionId or RemoveFromVersionId.")
	}
	sec.changed = s.now()
	return struct {
		ARN  string `json:"ARN"`
		Name string `json:"Name"`
	}{sec.arn, sec.name}, nil
}

func (s *Store) smDeleteSecret(c *call) (any, *apiError) {
	var in struct {
		SecretID                   string `json:"SecretId"`
		RecoveryWindowInDays       *int64 `json:"RecoveryWindowInDays"`
		ForceDeleteWithoutRecovery bool   `json:"ForceDeleteWithoutRecovery"`
	}
	if e := c.decode(&in); e != nil {
		return nil, e
	}
	if in.ForceDeleteWithoutRecovery && in.RecoveryWindowInDays != nil {
		return nil, invalid("InvalidParameterException", "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.")
	}
	days := int64(30)
	if in.RecoveryWindowInDays != nil {
		days = *in.RecoveryWindowInDays
		if days < 7 || days > 30 {
			return nil, invalid("InvalidParameterException", "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, e := s.readableSecretLocked(c, "DeleteSecret", in.SecretID)
	if e != nil {
		return nil, e
	}
	c.resource = sec.arn
	now := s.now()
	when := now
	if in.ForceDeleteWithoutRecovery {
		delete(s.secrets[c.region], sec.name)
	} else {
		if sec.deleted.IsZero() {
			sec.deleted = now
		}
		when = sec.deleted.Add(time.Duration(days) * 24 * time.Hour)
	}
	return struct {
		ARN          string `json:"ARN"`
		Name         string `json:"Name"`
		DeletionDate epoch  `json:"DeletionDate"`
	}{sec.arn, sec.name, epoch(when)}, nil
}

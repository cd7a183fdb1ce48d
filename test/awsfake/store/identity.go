package store

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Token audiences the fake accepts, as the real services do.
const (
	AudienceSTS         = "sts.amazonaws.com"
	AudiencePodIdentity = "pods.eks.amazonaws.com"
)

// PodIdentityCredentialTTL is how long pod identity credentials stay valid,
// matching EKS.
const PodIdentityCredentialTTL = 6 * time.Hour

// Role is an IAM role the fake lets callers assume, with a deliberately tiny
// policy model: who may assume it, and which resources it may use.
type Role struct {
	// ARN is arn:aws:iam::<account>:role/<name>.
	ARN string `json:"arn"`
	// Subjects lists the token "sub" claims allowed to assume the role with
	// AssumeRoleWithWebIdentity, e.g. "system:serviceaccount:ns:sa". "*"
	// matches any run of characters. Pod identity ignores it: the association
	// is the trust.
	Subjects []string `json:"subjects"`
	// Allow lists resource ARN patterns ("*" any run of characters, "?" one
	// character) on which the role may perform every Secrets Manager and SSM
	// action the fake implements.
	Allow []string `json:"allow"`
}

// Credentials are temporary credentials minted by the fake.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expires         time.Time
	// AssumedRoleARN is arn:aws:sts::<account>:assumed-role/<role>/<session>.
	AssumedRoleARN string
}

type issuedCred struct {
	secret, token    string
	roleARN, session string
	expires          time.Time
}

// principal is the authenticated caller of a signed request.
type principal struct {
	akid, roleARN, session string
}

var roleARNRe = regexp.MustCompile(`^arn:aws[a-z-]*:iam::(\d{12}):role/(?:[\w+=,.@/-]*/)?([\w+=,.@-]{1,64})$`)

func parseRoleARN(arn string) (account, name string, ok bool) {
	m := roleARNRe.FindStringSubmatch(arn)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

func assumedRoleARN(roleARN, session string) string {
	acct, name, ok := parseRoleARN(roleARN)
	if !ok {
		return roleARN + "/" + session
	}
	return "arn:aws:sts::" + acct + ":assumed-role/" + name + "/" + session
}

// AddRole registers (or replaces, by ARN) a role.
func (s *Store) AddRole(r Role) {
	r.Subjects = slices.Clone(r.Subjects)
	r.Allow = slices.Clone(r.Allow)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roles[r.ARN] = r
}

// AddPodIdentityAssociation maps a service account to a role for the pod
// identity endpoint, replacing any earlier association of that account (EKS
// allows one per service account).
func (s *Store) AddPodIdentityAssociation(namespace, serviceAccount, roleARN string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.podIdentity[namespace+"/"+serviceAccount] = roleARN
}

// IssueCredentials mints temporary credentials for roleARN without a token,
// for tests that want signed SDK clients but do not exercise STS. The role
// must have been added. ttl <= 0 means one hour.
func (s *Store) IssueCredentials(roleARN, sessionName string, ttl time.Duration) (Credentials, error) {
	if ttl <= 0 {
		ttl = time.Hour
	}
	if sessionName == "" {
		sessionName = "awsfake"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.roles[roleARN]; !ok {
		return Credentials{}, notFound("NoSuchEntity", "role "+roleARN+" was not added to the fake")
	}
	return s.issueLocked(roleARN, sessionName, ttl), nil
}

func (s *Store) issueLocked(roleARN, session string, ttl time.Duration) Credentials {
	now := s.now()
	c := &issuedCred{
		secret:  randomString(b64chars, 40),
		token:   "FwoGZXIvYXdzEAwaDawsfake" + randomString(b64chars, 300),
		roleARN: roleARN,
		session: session,
		expires: now.Add(ttl).Truncate(time.Second),
	}
	akid := "ASIA" + randomString(upperB32, 16)
	s.creds[akid] = c
	// Forget credentials that expired long ago so a long-running server does
	// not grow without bound; recently expired ones still answer
	// ExpiredTokenException.
	if s.issued++; s.issued%1024 == 0 {
		for k, v := range s.creds {
			if now.Sub(v.expires) > time.Hour {
				delete(s.creds, k)
			}
		}
	}
	return Credentials{AccessKeyID: akid, SecretAccessKey: c.secret, SessionToken: c.token, Expires: c.expires, AssumedRoleARN: assumedRoleARN(roleARN, session)}
}

// authorizeLocked allows action on resource if the caller's role has a
// matching Allow pattern. A nil principal (trusted in-process caller) is
// always allowed.
func (s *Store) authorizeLocked(c *call, action, resource string) *apiError {
	if c.p == nil {
		return nil
	}
	if role, ok := s.roles[c.p.roleARN]; ok {
		for _, pat := range role.Allow {
			if globMatch(pat, resource) {
				return nil
			}
		}
	}
	who := assumedRoleARN(c.p.roleARN, c.p.session)
	return &apiError{status: 400, code: "AccessDeniedException",
		msg: fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s because no identity-based policy allows the %s action", who, action, resource, action)}
}

// globMatch reports whether s matches pattern, where '*' matches any run of
// characters and '?' exactly one (IAM's wildcard syntax).
func globMatch(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// ---- STS (awsQuery) ----

const stsNS = "https://sts.amazonaws.com/doc/2011-06-15/"

var sessionNameRe = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

type stsCreds struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	SessionToken    string `xml:"SessionToken"`
	Expiration      string `xml:"Expiration"`
}

type stsAssumeResponse struct {
	XMLName xml.Name `xml:"AssumeRoleWithWebIdentityResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Result  struct {
		SubjectFromWebIdentityToken string                              `xml:"SubjectFromWebIdentityToken"`
		Audience                    string                              `xml:"Audience"`
		AssumedRoleUser             struct{ Arn, AssumedRoleID string } `xml:"AssumedRoleUser"`
		Credentials                 stsCreds                            `xml:"Credentials"`
		Provider                    string                              `xml:"Provider"`
	} `xml:"AssumeRoleWithWebIdentityResult"`
	RequestID string `xml:"ResponseMetadata>RequestId"`
}

func (s *Store) stsAssumeRoleWithWebIdentity(ctx context.Context, c *call, form url.Values) (any, *apiError) {
	c.resource = form.Get("RoleArn")
	roleARN := form.Get("RoleArn")
	session := form.Get("RoleSessionName")
	token := form.Get("WebIdentityToken")
	switch {
	case roleARN == "":
		return nil, stsValidation("roleArn", "Member must not be null")
	case token == "":
		return nil, stsValidation("webIdentityToken", "Member must not be null")
	case session == "":
		return nil, stsValidation("roleSessionName", "Member must not be null")
	case !sessionNameRe.MatchString(session):
		return nil, stsValidation("roleSessionName", `Member must satisfy regular expression pattern: [\w+=,.@-]*`)
	}
	dur := time.Hour
	if d := form.Get("DurationSeconds"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 900 || n > 43200 {
			return nil, stsValidation("durationSeconds", "Member must have value between 900 and 43200")
		}
		dur = time.Duration(n) * time.Second
	}
	claims, e := s.verifyJWT(ctx, token, AudienceSTS)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	role, ok := s.roles[roleARN]
	trusted := false
	for _, sub := range role.Subjects {
		trusted = trusted || globMatch(sub, claims.Subject)
	}
	if !ok || !trusted {
		return nil, &apiError{status: 403, code: "AccessDenied", msg: "Not authorized to perform sts:AssumeRoleWithWebIdentity"}
	}
	cr := s.issueLocked(roleARN, session, dur)
	var out stsAssumeResponse
	out.Xmlns = stsNS
	out.Result.SubjectFromWebIdentityToken = claims.Subject
	out.Result.Audience = AudienceSTS
	out.Result.Provider = claims.Issuer
	out.Result.AssumedRoleUser.Arn = cr.AssumedRoleARN
	out.Result.AssumedRoleUser.AssumedRoleID = roleID(roleARN) + ":" + session
	out.Result.Credentials = stsCreds{cr.AccessKeyID, cr.SecretAccessKey, cr.SessionToken, cr.Expires.UTC().Format(time.RFC3339)}
	out.RequestID = newUUID()
	return out, nil
}

// roleID derives a stable AROA… unique ID from the role ARN.
func roleID(arn string) string {
	var h uint64 = 1469598103934665603
	for i := 0; i < len(arn); i++ {
		h = (h ^ uint64(arn[i])) * 1099511628211
	}
	b := make([]byte, 17)
	for i := range b {
		b[i] = upperB32[h%32]
		h = h/32 ^ h<<7
	}
	return "AROA" + string(b)
}

func stsValidation(field, constraint string) *apiError {
	return &apiError{status: 400, code: "ValidationError", msg: fmt.Sprintf("1 validation error detected: Value at '%s' failed to satisfy constraint: %s", field, constraint), kind: ErrInvalid}
}

type stsErrorResponse struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

func writeSTSError(w http.ResponseWriter, e *apiError) {
	var out stsErrorResponse
	out.Xmlns = stsNS
	out.Error.Type = "Sender"
	if e.status >= 500 {
		out.Error.Type = "Receiver"
	}
	out.Error.Code = e.code
	out.Error.Message = e.msg
	out.RequestID = newUUID()
	writeXML(w, e.status, out)
}

func writeXML(w http.ResponseWriter, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(b)
}

// ---- EKS Pod Identity agent (container credentials endpoint) ----

func podIdentityError(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, msg: msg}
}

// podIdentityCredentials answers what the EKS Pod Identity agent answers at
// /v1/credentials: the Authorization header carries the pod's projected
// service-account token (audience pods.eks.amazonaws.com).
func (s *Store) podIdentityCredentials(ctx context.Context, c *call, authz string) (any, *apiError) {
	token := strings.TrimSpace(strings.TrimPrefix(authz, "Bearer "))
	if token == "" {
		return nil, podIdentityError(401, "InvalidTokenException", "Service account token cannot be empty")
	}
	claims, e := s.verifyJWT(ctx, token, AudiencePodIdentity)
	if e != nil {
		code := "InvalidTokenException"
		if e.code == "ExpiredTokenException" {
			code = e.code
		}
		return nil, podIdentityError(401, code, e.msg)
	}
	rest, ok := strings.CutPrefix(claims.Subject, "system:serviceaccount:")
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || sa == "" {
		return nil, podIdentityError(401, "InvalidTokenException", "token subject is not a Kubernetes service account")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	roleARN, ok := s.podIdentity[ns+"/"+sa]
	if !ok {
		return nil, podIdentityError(403, "AccessDeniedException", fmt.Sprintf("no EKS Pod Identity association for service account %s/%s", ns, sa))
	}
	c.role = roleARN
	if _, ok := s.roles[roleARN]; !ok {
		return nil, podIdentityError(403, "AccessDeniedException", "the associated role "+roleARN+" does not exist")
	}
	session := "eks-awsfake-" + ns + "-" + sa
	if len(session) > 64 {
		session = session[:64]
	}
	cr := s.issueLocked(roleARN, session, PodIdentityCredentialTTL)
	acct, _, ok := parseRoleARN(roleARN)
	if !ok {
		acct = s.accountID
	}
	return struct {
		AccessKeyID     string `json:"AccessKeyId"`
		SecretAccessKey string `json:"SecretAccessKey"`
		Token           string `json:"Token"`
		AccountID       string `json:"AccountId"`
		Expiration      string `json:"Expiration"`
	}{cr.AccessKeyID, cr.SecretAccessKey, cr.SessionToken, acct, cr.Expires.UTC().Format(time.RFC3339)}, nil
}

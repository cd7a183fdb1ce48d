package store

import (
	"crypto/rand"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
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
	// character) on which the role may perform every action the fake serves.
	Allow []string `json:"allow"`
}

// Credentials are temporary credentials minted by the fake.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expires         time.Time
}

type issuedCred struct {
	secret, token    string
	roleARN, session string
	expires          time.Time
}

// principal is the authenticated caller of a signed request.
type principal struct {
	roleARN, session string
}

var roleARNRe = regexp.MustCompile(`^arn:aws[a-z-]*:iam::(\d{12}):role/(?:[\w+=,.@/-]*/)?([\w+=,.@-]{1,64})$`)

func parseRoleARN(arn string) (account, name string, ok bool) {
	m := roleARNRe.FindStringSubmatch(arn)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
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
// must have been added.
func (s *Store) IssueCredentials(roleARN, sessionName string, ttl time.Duration) (Credentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.roles[roleARN]; !ok {
		return Credentials{}, badRequest("NoSuchEntity", "role "+roleARN+" was not added to the fake")
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
	return Credentials{AccessKeyID: akid, SecretAccessKey: c.secret, SessionToken: c.token, Expires: c.expires}
}

// authorizeLocked allows action on resource if the caller's role has a
// matching Allow pattern.
func (s *Store) authorizeLocked(c *call, action, resource string) *apiError {
	if slices.ContainsFunc(s.roles[c.p.roleARN].Allow, func(pat string) bool { return globMatch(pat, resource) }) {
		return nil
	}
	who := c.p.roleARN + "/" + c.p.session
	if acct, name, ok := parseRoleARN(c.p.roleARN); ok {
		who = "arn:aws:sts::" + acct + ":assumed-role/" + name + "/" + c.p.session
	}
	return badRequest("AccessDeniedException",
		fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s because no identity-based policy allows the %s action", who, action, resource, action))
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

type stsAssumeResponse struct {
	XMLName     xml.Name `xml:"AssumeRoleWithWebIdentityResponse"`
	Xmlns       string   `xml:"xmlns,attr"`
	Credentials struct {
		AccessKeyID     string `xml:"AccessKeyId"`
		SecretAccessKey string `xml:"SecretAccessKey"`
		SessionToken    string `xml:"SessionToken"`
		Expiration      string `xml:"Expiration"`
	} `xml:"AssumeRoleWithWebIdentityResult>Credentials"`
}

func (s *Store) stsAssumeRoleWithWebIdentity(c *call, form url.Values) (any, *apiError) {
	roleARN := form.Get("RoleArn")
	session := form.Get("RoleSessionName")
	token := form.Get("WebIdentityToken")
	c.resource = roleARN
	if roleARN == "" || token == "" || !sessionNameRe.MatchString(session) {
		return nil, badRequest("ValidationError", `RoleArn and WebIdentityToken are required; RoleSessionName must match [\w+=,.@-]{2,64}`)
	}
	sub, e := s.verifyJWT(token, AudienceSTS)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.ContainsFunc(s.roles[roleARN].Subjects, func(pat string) bool { return globMatch(pat, sub) }) {
		return nil, &apiError{http.StatusForbidden, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"}
	}
	cr := s.issueLocked(roleARN, session, time.Hour)
	out := stsAssumeResponse{Xmlns: stsNS}
	out.Credentials.AccessKeyID, out.Credentials.SecretAccessKey, out.Credentials.SessionToken = cr.AccessKeyID, cr.SecretAccessKey, cr.SessionToken
	out.Credentials.Expiration = cr.Expires.UTC().Format(time.RFC3339)
	return out, nil
}

func writeSTSError(w http.ResponseWriter, e *apiError) {
	var out struct {
		XMLName xml.Name `xml:"ErrorResponse"`
		Xmlns   string   `xml:"xmlns,attr"`
		Type    string   `xml:"Error>Type"`
		Code    string   `xml:"Error>Code"`
		Message string   `xml:"Error>Message"`
	}
	out.Xmlns, out.Type, out.Code, out.Message = stsNS, "Sender", e.code, e.msg
	if e.status >= 500 {
		out.Type = "Receiver"
	}
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

// podIdentityCredentials answers what the EKS Pod Identity agent answers at
// /v1/credentials: the Authorization header carries the pod's projected
// service-account token (audience pods.eks.amazonaws.com).
func (s *Store) podIdentityCredentials(c *call, authz string) (any, *apiError) {
	token := strings.TrimSpace(strings.TrimPrefix(authz, "Bearer "))
	if token == "" {
		return nil, &apiError{http.StatusUnauthorized, "InvalidTokenException", "Service account token cannot be empty"}
	}
	sub, e := s.verifyJWT(token, AudiencePodIdentity)
	if e != nil {
		if e.code != "ExpiredTokenException" {
			e.code = "InvalidTokenException"
		}
		e.status = http.StatusUnauthorized
		return nil, e
	}
	rest, ok := strings.CutPrefix(sub, "system:serviceaccount:")
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || sa == "" {
		return nil, &apiError{http.StatusUnauthorized, "InvalidTokenException", "token subject is not a Kubernetes service account"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	roleARN, ok := s.podIdentity[ns+"/"+sa]
	if _, known := s.roles[roleARN]; !ok || !known {
		return nil, &apiError{http.StatusForbidden, "AccessDeniedException", fmt.Sprintf("no EKS Pod Identity association to an existing role for service account %s/%s", ns, sa)}
	}
	c.role = roleARN
	session := "eks-awsfake-" + ns + "-" + sa
	cr := s.issueLocked(roleARN, session[:min(len(session), 64)], PodIdentityCredentialTTL)
	return struct {
		AccessKeyID     string `json:"AccessKeyId"`
		SecretAccessKey string `json:"SecretAccessKey"`
		Token           string `json:"Token"`
		Expiration      string `json:"Expiration"`
	}{cr.AccessKeyID, cr.SecretAccessKey, cr.SessionToken, cr.Expires.UTC().Format(time.RFC3339)}, nil
}

const (
	alnum    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	upperB32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

// randomString draws n characters uniformly from alphabet (len ≤ 256) using
// crypto/rand, because minted secret keys and session tokens must not be
// guessable even in a fake: e2e environments expose the endpoint on a network.
func randomString(alphabet string, n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, 1)
	limit := 256 - 256%len(alphabet)
	for len(out) < n {
		_, _ = rand.Read(buf) // never fails (crypto/rand)
		if int(buf[0]) < limit {
			out = append(out, alphabet[int(buf[0])%len(alphabet)])
		}
	}
	return string(out)
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

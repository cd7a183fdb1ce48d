package store

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxBody bounds request bodies; the largest legitimate request (a seed of
// large secrets) is far below it.
const maxBody = 1 << 20

const jsonContentType = "application/x-amz-json-1.1"

// call carries one AWS request through dispatch, authorization and logging.
type call struct {
	op       string // counter key, e.g. "secretsmanager.GetSecretValue"
	region   string
	p        principal
	role     string // role ARN for logs
	resource string // resource ARN for logs
	body     []byte
	start    time.Time
}

func (c *call) decode(v any) *apiError {
	if err := json.Unmarshal(c.body, v); err != nil {
		return badRequest("SerializationException", "Request body could not be parsed: "+err.Error())
	}
	return nil
}

func validation(field, constraint string) *apiError {
	return badRequest("ValidationException", fmt.Sprintf("1 validation error detected: Value at '%s' failed to satisfy constraint: %s", field, constraint))
}

// jsonOps are the awsJson1.1 calls the driver sends; any other is answered
// UnknownOperationException.
var jsonOps = map[string]func(*Store, *call) (any, *apiError){
	"secretsmanager.GetSecretValue":      (*Store).smGetSecretValue,
	"secretsmanager.BatchGetSecretValue": (*Store).smBatchGetSecretValue,
	"secretsmanager.DescribeSecret":      (*Store).smDescribeSecret,
	"ssm.GetParameters":                  (*Store).ssmGetParameters,
}

// Handler serves every emulated service on one endpoint, dispatching the
// way AWS clients address them:
//
//   - POST with X-Amz-Target "secretsmanager.<Op>" or "AmazonSSM.<Op>":
//     Secrets Manager / SSM (awsJson1.1, SigV4-signed with fake-issued
//     credentials);
//   - form-encoded POST with Action=AssumeRoleWithWebIdentity: STS (awsQuery);
//   - GET /v1/credentials: the EKS Pod Identity agent;
//   - /_fake/...: the control endpoints (seed.go; not counted, no latency or
//     faults).
func (s *Store) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Store) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/_fake/"):
		s.serveControl(w, r)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/credentials":
		s.servePodIdentity(w, r)
	case r.Method == http.MethodPost && r.Header.Get("X-Amz-Target") != "":
		s.serveJSON(w, r)
	case r.Method == http.MethodPost:
		s.serveQuery(w, r)
	default:
		http.NotFound(w, r)
	}
}

func readBody(r *http.Request) ([]byte, *apiError) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, badRequest("SerializationException", "could not read request body")
	}
	if len(b) > maxBody {
		return nil, &apiError{http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "request body too large"}
	}
	return b, nil
}

func (s *Store) serveJSON(w http.ResponseWriter, r *http.Request) {
	svc, op, _ := strings.Cut(r.Header.Get("X-Amz-Target"), ".")
	switch svc {
	case "secretsmanager":
	case "AmazonSSM":
		svc = "ssm"
	default:
		writeJSONError(w, badRequest("UnknownOperationException", "unknown X-Amz-Target "+svc))
		return
	}
	c := &call{op: svc + "." + op, start: time.Now()}
	var out any
	e := func() *apiError {
		authz := r.Header.Get("Authorization")
		sh, perr := parseSigV4(authz)
		if sh != nil {
			c.region = sh.region
		}
		// Read the body before waiting: net/http only notices a client
		// that gave up (and cancels the context) once the body is consumed.
		body, readErr := readBody(r)
		if e := s.begin(r.Context(), c.op, c.region); e != nil {
			return e
		}
		switch {
		case readErr != nil:
			return readErr
		case authz == "":
			return badRequest("MissingAuthenticationTokenException", "Missing Authentication Token")
		case perr != nil:
			return perr
		}
		c.body = body
		var e *apiError
		if c.p, e = s.authenticate(r, body, sh, svc); e != nil {
			return e
		}
		c.role = c.p.roleARN
		h := jsonOps[c.op]
		if h == nil {
			return badRequest("UnknownOperationException", "awsfake does not implement "+c.op)
		}
		out, e = h(s, c)
		return e
	}()
	if e != nil {
		writeJSONError(w, e)
	} else {
		writeJSON(w, http.StatusOK, jsonContentType, out)
	}
	s.logCall(c, e)
}

// authenticate accepts only credentials this store issued, still valid,
// presented with their session token and a correct SigV4 signature.
func (s *Store) authenticate(r *http.Request, body []byte, sh *sigv4Header, service string) (principal, *apiError) {
	if sh.service != service {
		return principal{}, badRequest("InvalidSignatureException", fmt.Sprintf("Credential should be scoped to correct service: '%s'.", service))
	}
	s.mu.RLock()
	cred, ok := s.creds[sh.accessKey]
	var cr issuedCred
	if ok {
		cr = *cred
	}
	s.mu.RUnlock()
	if !ok || subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Amz-Security-Token")), []byte(cr.token)) != 1 {
		return principal{}, badRequest("UnrecognizedClientException", "The security token included in the request is invalid.")
	}
	if !s.now().Before(cr.expires) {
		return principal{}, badRequest("ExpiredTokenException", "The security token included in the request is expired")
	}
	if e := verifySigV4(r, body, sh, cr.secret); e != nil {
		return principal{}, e
	}
	return principal{roleARN: cr.roleARN, session: cr.session}, nil
}

func (s *Store) serveQuery(w http.ResponseWriter, r *http.Request) {
	body, e := readBody(r)
	if e != nil {
		writeSTSError(w, e)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		writeSTSError(w, badRequest("MalformedQueryString", "request body is not form-encoded"))
		return
	}
	action := form.Get("Action")
	// The driver's STS calls are unsigned, to an endpoint that names no
	// region: their quota is the region "" one.
	c := &call{op: "sts." + action, start: time.Now(), role: form.Get("RoleArn")}
	var out any
	e = s.begin(r.Context(), c.op, "")
	if e == nil {
		if action == "AssumeRoleWithWebIdentity" {
			out, e = s.stsAssumeRoleWithWebIdentity(c, form)
		} else {
			e = badRequest("InvalidAction", "Could not find operation "+action+" for version 2011-06-15")
		}
	}
	if e != nil {
		writeSTSError(w, e)
	} else {
		writeXML(w, http.StatusOK, out)
	}
	s.logCall(c, e)
}

func (s *Store) servePodIdentity(w http.ResponseWriter, r *http.Request) {
	c := &call{op: "eks-auth.PodIdentity", start: time.Now()}
	var out any
	e := s.begin(r.Context(), c.op, "")
	if e != nil && e.status == http.StatusBadRequest {
		e.status = http.StatusTooManyRequests // how the agent answers throttling
	}
	if e == nil {
		out, e = s.podIdentityCredentials(c, r.Header.Get("Authorization"))
	}
	if e != nil {
		writeJSON(w, e.status, "application/json", map[string]string{"code": e.code, "message": e.msg})
	} else {
		writeJSON(w, http.StatusOK, "application/json", out)
	}
	s.logCall(c, e)
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"__type":"InternalServiceError","message":"awsfake: encode response"}`)
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeJSONError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, jsonContentType, map[string]string{"__type": e.code, "message": e.msg})
}

// logCall records one AWS call. It never logs request bodies, secret values
// or tokens: only names/ARNs and outcomes.
func (s *Store) logCall(c *call, e *apiError) {
	outcome := "OK"
	if e != nil {
		outcome = e.code
	}
	s.log.Info("aws call", "op", c.op, "region", c.region, "role", c.role, "resource", c.resource,
		"outcome", outcome, "duration", time.Since(c.start).Round(time.Microsecond))
}

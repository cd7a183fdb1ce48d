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

// maxBody bounds request bodies; the largest legitimate request (a 64 KiB
// secret, base64-encoded) is far below it.
const maxBody = 1 << 20

const jsonContentType = "application/x-amz-json-1.1"

// call carries one AWS request through dispatch, authorization and logging.
type call struct {
	op       string // counter key, e.g. "secretsmanager.GetSecretValue"
	region   string
	p        *principal
	role     string // role ARN for logs
	resource string // resource ARN for logs
	body     []byte
	start    time.Time
}

func (c *call) decode(v any) *apiError {
	if len(strings.TrimSpace(string(c.body))) == 0 {
		return nil
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		return &apiError{status: 400, code: "SerializationException", msg: "Request body could not be parsed: " + err.Error()}
	}
	return nil
}

func validation(field, constraint string) *apiError {
	return invalid("ValidationException", fmt.Sprintf("1 validation error detected: Value at '%s' failed to satisfy constraint: %s", field, constraint))
}

type jsonOp func(*Store, *call) (any, *apiError)

var jsonOps = map[string]jsonOp{
	"secretsmanager.GetSecretValue":           (*Store).smGetSecretValue,
	"secretsmanager.BatchGetSecretValue":      (*Store).smBatchGetSecretValue,
	"secretsmanager.DescribeSecret":           (*Store).smDescribeSecret,
	"secretsmanager.CreateSecret":             (*Store).smCreateSecret,
	"secretsmanager.PutSecretValue":           (*Store).smPutSecretValue,
	"secretsmanager.UpdateSecretVersionStage": (*Store).smUpdateSecretVersionStage,
	"secretsmanager.DeleteSecret":             (*Store).smDeleteSecret,
	"ssm.GetParameters":                       (*Store).ssmGetParameters,
	"ssm.GetParameter":                        (*Store).ssmGetParameter,
	"ssm.PutParameter":                        (*Store).ssmPutParameter,
	"ssm.DeleteParameter":                     (*Store).ssmDeleteParameter,
	"ssm.LabelParameterVersion":               (*Store).ssmLabelParameterVersion,
}

// Handler serves every emulated service on one endpoint, dispatching the
// way AWS clients address them:
//
//   - POST with X-Amz-Target "secretsmanager.<Op>" or "AmazonSSM.<Op>":
//     Secrets Manager / SSM (awsJson1.1, SigV4-signed with fake-issued
//     credentials);
//   - form-encoded POST with Action=AssumeRoleWithWebIdentity: STS (awsQuery);
//   - GET /v1/credentials: the EKS Pod Identity agent;
//   - /_fake/...: JSON control endpoints for e2e tests (not counted, no
//     latency or faults).
func (s *Store) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Store) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/_fake/"):
		s.serveControl(w, r)
	case r.URL.Path == "/v1/credentials":
		if r.Method != http.MethodGet {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
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
		return nil, &apiError{status: 400, code: "SerializationException", msg: "could not read request body"}
	}
	if len(b) > maxBody {
		return nil, &apiError{status: 413, code: "RequestEntityTooLarge", msg: "request body too large"}
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
		writeJSONError(w, &apiError{status: 400, code: "UnknownOperationException", msg: "unknown X-Amz-Target " + svc})
		return
	}
	c := &call{op: svc + "." + op, start: time.Now()}
	var out any
	e := func() *apiError {
		sh, perr := (*sigv4Header)(nil), (*apiError)(nil)
		if authz := r.Header.Get("Authorization"); authz != "" {
			if sh, perr = parseSigV4(authz); sh != nil {
				c.region = sh.region
			}
		}
		// Read the body before sleeping: net/http only notices a client
		// that gave up (and cancels the context) once the body is consumed.
		body, readErr := readBody(r)
		account := s.accountID
		if sh != nil {
			account = s.callerAccount(sh.accessKey)
		}
		if e := s.begin(r.Context(), c.op, account, c.region); e != nil {
			return e
		}
		if readErr != nil {
			return readErr
		}
		c.body = body
		switch {
		case sh == nil && perr == nil:
			return &apiError{status: 400, code: "MissingAuthenticationTokenException", msg: "Missing Authentication Token"}
		case perr != nil:
			return perr
		}
		var e *apiError
		if c.p, e = s.authenticate(r, body, sh, svc); e != nil {
			return e
		}
		c.role = c.p.roleARN
		h := jsonOps[c.op]
		if h == nil {
			return &apiError{status: 400, code: "UnknownOperationException", msg: "awsfake does not implement " + c.op}
		}
		out, e = h(s, c)
		return e
	}()
	w.Header().Set("X-Amzn-Requestid", newUUID())
	if e != nil {
		writeJSONError(w, e)
	} else {
		writeJSON(w, http.StatusOK, jsonContentType, out)
	}
	s.logCall(c, e)
}

// authenticate accepts only credentials this store issued, still valid,
// presented with their session token and a correct SigV4 signature.
func (s *Store) authenticate(r *http.Request, body []byte, sh *sigv4Header, service string) (*principal, *apiError) {
	if sh.service != service {
		return nil, &apiError{status: 400, code: "InvalidSignatureException", msg: fmt.Sprintf("Credential should be scoped to correct service: '%s'.", service)}
	}
	s.mu.RLock()
	cred, ok := s.creds[sh.accessKey]
	var cr issuedCred
	if ok {
		cr = *cred
	}
	s.mu.RUnlock()
	invalidToken := &apiError{status: 400, code: "UnrecognizedClientException", msg: "The security token included in the request is invalid."}
	if !ok {
		return nil, invalidToken
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Amz-Security-Token")), []byte(cr.token)) != 1 {
		return nil, invalidToken
	}
	if !s.now().Before(cr.expires) {
		return nil, &apiError{status: 400, code: "ExpiredTokenException", msg: "The security token included in the request is expired"}
	}
	if e := verifySigV4(r, body, sh, cr.secret); e != nil {
		return nil, e
	}
	return &principal{akid: sh.accessKey, roleARN: cr.roleARN, session: cr.session}, nil
}

func (s *Store) serveQuery(w http.ResponseWriter, r *http.Request) {
	body, e := readBody(r)
	if e != nil {
		writeSTSError(w, e)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		writeSTSError(w, &apiError{status: 400, code: "MalformedQueryString", msg: "request body is not form-encoded"})
		return
	}
	for k, v := range r.URL.Query() {
		if _, dup := form[k]; !dup {
			form[k] = v
		}
	}
	action := form.Get("Action")
	if action == "" {
		writeSTSError(w, &apiError{status: 400, code: "MissingAction", msg: "no Action parameter and no X-Amz-Target header"})
		return
	}
	c := &call{op: "sts." + action, start: time.Now(), region: stsRegion(r), role: form.Get("RoleArn")}
	var out any
	e = s.begin(r.Context(), c.op, s.roleAccount(c.role), c.region)
	if e == nil {
		switch action {
		case "AssumeRoleWithWebIdentity":
			out, e = s.stsAssumeRoleWithWebIdentity(r.Context(), c, form)
		default:
			e = &apiError{status: 400, code: "InvalidAction", msg: "Could not find operation " + action + " for version 2011-06-15"}
		}
	}
	if e != nil {
		writeSTSError(w, e)
	} else {
		writeXML(w, http.StatusOK, out)
	}
	s.logCall(c, e)
}

// stsRegion finds the region of an STS call: the SigV4 scope if the request
// happens to be signed, else a regional endpoint host name; "" otherwise.
func stsRegion(r *http.Request) string {
	if sh, _ := parseSigV4(r.Header.Get("Authorization")); sh != nil {
		return sh.region
	}
	if rest, ok := strings.CutPrefix(r.Host, "sts."); ok {
		if reg, _, ok := strings.Cut(rest, "."); ok && reg != "amazonaws" {
			return reg
		}
	}
	return ""
}

func (s *Store) servePodIdentity(w http.ResponseWriter, r *http.Request) {
	c := &call{op: "eks-auth.PodIdentity", start: time.Now()}
	var out any
	e := s.begin(r.Context(), c.op, s.accountID, "")
	if e != nil {
		if e.status == 400 {
			e = podIdentityError(http.StatusTooManyRequests, e.code, e.msg)
		}
	} else {
		out, e = s.podIdentityCredentials(r.Context(), c, r.Header.Get("Authorization"))
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

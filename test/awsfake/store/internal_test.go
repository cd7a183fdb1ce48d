package store

import (
	"net/http"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	tests := map[string]struct {
		pattern, s string
		want       bool
	}{
		"exact":                {"arn:a:b", "arn:a:b", true},
		"exact mismatch":       {"arn:a:b", "arn:a:c", false},
		"star suffix":          {"arn:secret:app/*", "arn:secret:app/db-AbCdEf", true},
		"star middle":          {"arn:*:secret:app/*", "arn:us-east-1:secret:app/x", true},
		"star matches empty":   {"app/*", "app/", true},
		"star needs prefix":    {"app/*", "other/app/x", false},
		"lone star":            {"*", "anything at all", true},
		"question mark":        {"db-??????", "db-AbCdEf", true},
		"question mark length": {"db-??????", "db-AbCdE", false},
		"multiple stars":       {"a*b*c", "aXXbYYbZZc", true},
		"backtracking":         {"a*bc", "abcbcbd", false},
		"trailing text":        {"app/db", "app/db2", false},
		"subject wildcard":     {"system:serviceaccount:ns:*", "system:serviceaccount:ns:sa", true},
		"subject other ns":     {"system:serviceaccount:ns:*", "system:serviceaccount:ns2:sa", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := globMatch(tc.pattern, tc.s); got != tc.want {
				t.Fatalf("globMatch(%q, %q) = %v", tc.pattern, tc.s, got)
			}
		})
	}
}

func TestSplitSelector(t *testing.T) {
	tests := map[string]struct{ in, base, sel string }{
		"plain":         {"/a/b", "/a/b", ""},
		"version":       {"/a/b:3", "/a/b", ":3"},
		"label":         {"/a/b:live", "/a/b", ":live"},
		"ARN":           {"arn:aws:ssm:r:1:parameter/a/b", "arn:aws:ssm:r:1:parameter/a/b", ""},
		"ARN version":   {"arn:aws:ssm:r:1:parameter/a/b:2", "arn:aws:ssm:r:1:parameter/a/b", ":2"},
		"odd ARN":       {"arn:aws:ssm:r:1:document/x", "arn:aws:ssm:r:1:document/x", ""},
		"no slash name": {"plain:1", "plain", ":1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if b, s := splitSelector(tc.in); b != tc.base || s != tc.sel {
				t.Fatalf("splitSelector(%q) = %q, %q", tc.in, b, s)
			}
		})
	}
}

func TestParseSigV4(t *testing.T) {
	tests := map[string]struct {
		header  string
		wantErr bool
		region  string
	}{
		"sdk form":         {header: "AWS4-HMAC-SHA256 Credential=ASIAX/20240101/eu-west-1/ssm/aws4_request, SignedHeaders=host;x-amz-date, Signature=abcd", region: "eu-west-1"},
		"no spaces":        {header: "AWS4-HMAC-SHA256 Credential=ASIAX/20240101/us-east-1/ssm/aws4_request,SignedHeaders=host,Signature=ab", region: "us-east-1"},
		"sigv2":            {header: "AWS ASIAX:sig", wantErr: true},
		"short credential": {header: "AWS4-HMAC-SHA256 Credential=ASIAX/20240101/ssm/aws4_request, SignedHeaders=host, Signature=ab", wantErr: true},
		"no signature":     {header: "AWS4-HMAC-SHA256 Credential=ASIAX/20240101/us-east-1/ssm/aws4_request, SignedHeaders=host", wantErr: true},
		"wrong terminator": {header: "AWS4-HMAC-SHA256 Credential=ASIAX/20240101/us-east-1/ssm/aws5_request, SignedHeaders=host, Signature=ab", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h, e := parseSigV4(tc.header)
			if (e != nil) != tc.wantErr {
				t.Fatalf("err = %v", e)
			}
			if e == nil && h.region != tc.region {
				t.Fatalf("region %q", h.region)
			}
		})
	}
}

func TestParseJWKS(t *testing.T) {
	tests := map[string]struct {
		doc     string
		wantErr bool
		kids    int
	}{
		"rsa":             {doc: `{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`, kids: 1},
		"skips enc keys":  {doc: `{"keys":[{"kty":"RSA","kid":"a","use":"enc","n":"AQAB","e":"AQAB"},{"kty":"RSA","kid":"b","n":"AQAB","e":"AQAB"}]}`, kids: 1},
		"skips others":    {doc: `{"keys":[{"kty":"OKP","kid":"x"},{"kty":"EC","crv":"P-256","kid":"y"},{"kty":"RSA","kid":"b","n":"AQAB","e":"AQAB"}]}`, kids: 1},
		"rsa without kid": {doc: `{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`, wantErr: true},
		"bad modulus":     {doc: `{"keys":[{"kty":"RSA","kid":"a","n":"!!","e":"AQAB"}]}`, wantErr: true},
		"no usable keys":  {doc: `{"keys":[{"kty":"OKP"}]}`, wantErr: true},
		"not JSON":        {doc: `keys`, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			kids, err := parseJWKS([]byte(tc.doc))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err == nil && len(kids) != tc.kids {
				t.Fatalf("%d keys, want %d", len(kids), tc.kids)
			}
		})
	}
}

func TestFaultError(t *testing.T) {
	for code, status := range map[string]int{
		FaultThrottling:       http.StatusBadRequest,
		FaultInternal:         http.StatusInternalServerError,
		"InternalServerError": http.StatusInternalServerError, // SSM's spelling
	} {
		if e := faultError(code); e.status != status || e.code != code {
			t.Errorf("faultError(%q) = %d %s, want %d", code, e.status, e.code, status)
		}
	}
}

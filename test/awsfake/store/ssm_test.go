package store_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

func ssmNames(names ...string) *ssm.GetParametersInput {
	return &ssm.GetParametersInput{Names: names}
}

func TestGetParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, "arn:aws:ssm:*:"+acct+":parameter/app/*", "arn:aws:ssm:*:"+acct+":parameter/plain")
	for _, v := range []string{"v1", "v2", "v3", "v4"} {
		e.s.PutParameter(east, "/app/db", v, "String")
	}
	// A label moves: the second labelling detaches it from version 1.
	for _, v := range []int64{1, 2} {
		if err := e.s.LabelParameterVersion(east, "/app/db", v, "stable"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.s.LabelParameterVersion(east, "/app/db", 5, "stable"); err == nil {
		t.Fatal("labelled a missing version")
	}
	e.s.PutParameter(east, "/app/list", "a,b,c", "StringList")
	e.s.PutParameter(east, "/app/token", "s3cret", "SecureString")
	e.s.PutParameter(east, "plain", "x", "")
	e.s.PutParameter(east, "/other/x", "forbidden", "String")
	c := e.ssm(east, e.assume(appRole, appSA))
	dbARN := "arn:aws:ssm:us-east-1:" + acct + ":parameter/app/db"
	type param struct {
		name, value, selector string
		version               int64
		typ                   ssmtypes.ParameterType
	}
	db4 := param{"/app/db", "v4", "", 4, "String"}
	tests := map[string]struct {
		in          *ssm.GetParametersInput
		region      string
		want        []param
		wantInvalid []string
		wantCode    string
	}{
		"latest version":        {in: ssmNames("/app/db"), want: []param{db4}},
		"version selector":      {in: ssmNames("/app/db:1"), want: []param{{"/app/db", "v1", ":1", 1, "String"}}},
		"moved label":           {in: ssmNames("/app/db:stable"), want: []param{{"/app/db", "v2", ":stable", 2, "String"}}},
		"missing version":       {in: ssmNames("/app/db:9"), wantInvalid: []string{"/app/db:9"}},
		"missing label":         {in: ssmNames("/app/db:nolabel"), wantInvalid: []string{"/app/db:nolabel"}},
		"found and missing":     {in: ssmNames("/app/db", "/app/none"), want: []param{db4}, wantInvalid: []string{"/app/none"}},
		"duplicates once":       {in: ssmNames("/app/db", "/app/db"), want: []param{db4}},
		"string list":           {in: ssmNames("/app/list"), want: []param{{"/app/list", "a,b,c", "", 1, "StringList"}}},
		"secure decrypted":      {in: &ssm.GetParametersInput{Names: []string{"/app/token"}, WithDecryption: aws.Bool(true)}, want: []param{{"/app/token", "s3cret", "", 1, "SecureString"}}},
		"name without slash":    {in: ssmNames("plain"), want: []param{{"plain", "x", "", 1, "String"}}},
		"by ARN":                {in: ssmNames(dbARN), want: []param{db4}},
		"by ARN and version":    {in: ssmNames(dbARN + ":1"), want: []param{{"/app/db", "v1", ":1", 1, "String"}}},
		"ARN of another region": {in: ssmNames("arn:aws:ssm:eu-west-1:" + acct + ":parameter/app/db"), wantInvalid: []string{"arn:aws:ssm:eu-west-1:" + acct + ":parameter/app/db"}},
		"ten names":             {in: ssmNames("/app/a1", "/app/a2", "/app/a3", "/app/a4", "/app/a5", "/app/a6", "/app/a7", "/app/a8", "/app/a9", "/app/db"), want: []param{db4}, wantInvalid: []string{"/app/a1", "/app/a2", "/app/a3", "/app/a4", "/app/a5", "/app/a6", "/app/a7", "/app/a8", "/app/a9"}},
		"eleven names":          {in: ssmNames("/app/a1", "/app/a2", "/app/a3", "/app/a4", "/app/a5", "/app/a6", "/app/a7", "/app/a8", "/app/a9", "/app/a10", "/app/db"), wantCode: "ValidationException"},
		"one forbidden name":    {in: ssmNames("/app/db", "/other/x"), wantCode: "AccessDeniedException"},
		"forbidden missing":     {in: ssmNames("/secret/none"), wantCode: "AccessDeniedException"},
		"other region":          {in: ssmNames("/app/db"), region: west, wantInvalid: []string{"/app/db"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cl := c
			if tc.region != "" {
				cl = e.ssm(tc.region, e.issued(appRole))
			}
			out, err := cl.GetParameters(ctx(t), tc.in)
			if got := errCode(t, err); got != tc.wantCode {
				t.Fatalf("error code %q, want %q (%v)", got, tc.wantCode, err)
			}
			if err != nil {
				return
			}
			var got []param
			for _, p := range out.Parameters {
				got = append(got, param{aws.ToString(p.Name), aws.ToString(p.Value), aws.ToString(p.Selector), p.Version, p.Type})
				if want := "arn:aws:ssm:us-east-1:" + acct + ":parameter/" + strings.TrimPrefix(aws.ToString(p.Name), "/"); aws.ToString(p.ARN) != want {
					t.Errorf("ARN %q, want %q", aws.ToString(p.ARN), want)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("parameters %v, want %v", got, tc.want)
			}
			if !slices.Equal(out.InvalidParameters, tc.wantInvalid) {
				t.Errorf("InvalidParameters %v, want %v", out.InvalidParameters, tc.wantInvalid)
			}
		})
	}

	t.Run("secure without decryption hides the value", func(t *testing.T) {
		out, err := c.GetParameters(ctx(t), ssmNames("/app/token"))
		if err != nil || len(out.Parameters) != 1 {
			t.Fatal(out, err)
		}
		if v := aws.ToString(out.Parameters[0].Value); v == "" || strings.Contains(v, "s3cret") {
			t.Fatalf("undecrypted SecureString value %q", v)
		}
	})
	t.Run("access denied names the role and resource", func(t *testing.T) {
		_, err := c.GetParameters(ctx(t), ssmNames("/other/x"))
		msg := fmt.Sprint(err)
		for _, want := range []string{"assumed-role/app-reader/test-session", "arn:aws:ssm:us-east-1:" + acct + ":parameter/other/x", "ssm:GetParameters"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q lacks %q", msg, want)
			}
		}
	})
}

package store_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

func ssmNames(names ...string) *ssm.GetParametersInput {
	return &ssm.GetParametersInput{Names: names}
}

func ssmEnv(t *testing.T) (*env, *ssm.Client) {
	e := newEnv(t, store.Options{})
	e.role(appRole, "arn:aws:ssm:*:"+acct+":parameter/app/*", "arn:aws:ssm:*:"+acct+":parameter/plain")
	for _, v := range []string{"v1", "v2", "v3"} {
		e.s.PutParameter(east, "/app/db", v, store.TypeString)
	}
	if err := e.s.LabelParameterVersion(east, "/app/db", 2, "stable"); err != nil {
		t.Fatal(err)
	}
	e.s.PutParameter(east, "/app/list", "a,b,c", store.TypeStringList)
	e.s.PutParameter(east, "/app/token", "s3cret", store.TypeSecureString)
	e.s.PutParameter(east, "plain", "x", "")
	e.s.PutParameter(east, "/other/x", "forbidden", store.TypeString)
	return e, e.ssm(east, e.assume(appRole, appSA))
}

func TestGetParameters(t *testing.T) {
	t.Parallel()
	e, c := ssmEnv(t)
	dbARN := "arn:aws:ssm:us-east-1:" + acct + ":parameter/app/db"
	type param struct {
		name, value, selector string
		version               int64
		typ                   ssmtypes.ParameterType
	}
	tests := map[string]struct {
		in          *ssm.GetParametersInput
		region      string
		want        []param
		wantInvalid []string
		wantCode    string
	}{
		"latest version":     {in: ssmNames("/app/db"), want: []param{{"/app/db", "v3", "", 3, "String"}}},
		"version selector":   {in: ssmNames("/app/db:1"), want: []param{{"/app/db", "v1", ":1", 1, "String"}}},
		"label selector":     {in: ssmNames("/app/db:stable"), want: []param{{"/app/db", "v2", ":stable", 2, "String"}}},
		"missing version":    {in: ssmNames("/app/db:9"), wantInvalid: []string{"/app/db:9"}},
		"missing label":      {in: ssmNames("/app/db:nolabel"), wantInvalid: []string{"/app/db:nolabel"}},
		"found and missing":  {in: ssmNames("/app/db", "/app/none"), want: []param{{"/app/db", "v3", "", 3, "String"}}, wantInvalid: []string{"/app/none"}},
		"string list":        {in: ssmNames("/app/list"), want: []param{{"/app/list", "a,b,c", "", 1, "StringList"}}},
		"secure decrypted":   {in: &ssm.GetParametersInput{Names: []string{"/app/token"}, WithDecryption: aws.Bool(true)}, want: []param{{"/app/token", "s3cret", "", 1, "SecureString"}}},
		"name without slash": {in: ssmNames("plain"), want: []param{{"plain", "x", "", 1, "String"}}},
		"by ARN":             {in: ssmNames(dbARN), want: []param{{"/app/db", "v3", "", 3, "String"}}},
		"by ARN and version": {in: ssmNames(dbARN + ":1"), want: []param{{"/app/db", "v1", ":1", 1, "String"}}},
		"ten names":          {in: ssmNames("/app/a1", "/app/a2", "/app/a3", "/app/a4", "/app/a5", "/app/a6", "/app/a7", "/app/a8", "/app/a9", "/app/db"), want: []param{{"/app/db", "v3", "", 3, "String"}}, wantInvalid: []string{"/app/a1", "/app/a2", "/app/a3", "/app/a4", "/app/a5", "/app/a6", "/app/a7", "/app/a8", "/app/a9"}},
		"eleven names":       {in: ssmNames("/app/a1", "/app/a2", "/app/a3", "/app/a4", "/app/a5", "/app/a6", "/app/a7", "/app/a8", "/app/a9", "/app/a10", "/app/db"), wantCode: "ValidationException"},
		"one forbidden name": {in: ssmNames("/app/db", "/other/x"), wantCode: "AccessDeniedException"},
		"forbidden missing":  {in: ssmNames("/secret/none"), wantCode: "AccessDeniedException"},
		"other region":       {in: ssmNames("/app/db"), region: west, wantInvalid: []string{"/app/db"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cl := c
			if tc.region != "" {
				cl = e.ssm(tc.region, e.assume(appRole, appSA))
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
				if p.LastModifiedDate == nil || time.Since(*p.LastModifiedDate).Abs() > time.Minute {
					t.Errorf("LastModifiedDate %v", p.LastModifiedDate)
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

func TestGetParameter(t *testing.T) {
	t.Parallel()
	_, c := ssmEnv(t)
	tests := map[string]struct {
		name      string
		wantValue string
		wantCode  string
	}{
		"latest":          {name: "/app/db", wantValue: "v3"},
		"version":         {name: "/app/db:2", wantValue: "v2"},
		"label":           {name: "/app/db:stable", wantValue: "v2"},
		"missing":         {name: "/app/none", wantCode: "ParameterNotFound"},
		"missing version": {name: "/app/db:7", wantCode: "ParameterVersionNotFound"},
		"missing label":   {name: "/app/db:gone", wantCode: "ParameterNotFound"},
		"forbidden":       {name: "/other/x", wantCode: "AccessDeniedException"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := c.GetParameter(ctx(t), &ssm.GetParameterInput{Name: aws.String(tc.name)})
			if got := errCode(t, err); got != tc.wantCode {
				t.Fatalf("error code %q, want %q (%v)", got, tc.wantCode, err)
			}
			if err == nil && aws.ToString(out.Parameter.Value) != tc.wantValue {
				t.Fatalf("value %q, want %q", aws.ToString(out.Parameter.Value), tc.wantValue)
			}
			if tc.wantCode == "ParameterNotFound" {
				var pnf *ssmtypes.ParameterNotFound
				if !errors.As(err, &pnf) {
					t.Errorf("SDK did not decode a typed ParameterNotFound: %T", err)
				}
			}
		})
	}
}

func TestPutAndLabelParameter(t *testing.T) {
	t.Parallel()
	e, c := ssmEnv(t)
	steps := []struct {
		name     string
		do       func() (int64, error)
		wantVer  int64
		wantCode string
	}{
		{"create needs a type", func() (int64, error) {
			_, err := c.PutParameter(ctx(t), &ssm.PutParameterInput{Name: aws.String("/app/new"), Value: aws.String("1")})
			return 0, err
		}, 0, "ValidationException"},
		{"create", func() (int64, error) {
			out, err := c.PutParameter(ctx(t), &ssm.PutParameterInput{Name: aws.String("/app/new"), Value: aws.String("1"), Type: ssmtypes.ParameterTypeString})
			return version(out, err)
		}, 1, ""},
		{"overwrite refused", func() (int64, error) {
			_, err := c.PutParameter(ctx(t), &ssm.PutParameterInput{Name: aws.String("/app/new"), Value: aws.String("2")})
			return 0, err
		}, 0, "ParameterAlreadyExists"},
		{"overwrite", func() (int64, error) {
			out, err := c.PutParameter(ctx(t), &ssm.PutParameterInput{Name: aws.String("/app/new"), Value: aws.String("2"), Overwrite: aws.Bool(true)})
			return version(out, err)
		}, 2, ""},
		{"outside the role", func() (int64, error) {
			_, err := c.PutParameter(ctx(t), &ssm.PutParameterInput{Name: aws.String("/other/new"), Value: aws.String("1"), Type: ssmtypes.ParameterTypeString})
			return 0, err
		}, 0, "AccessDeniedException"},
		{"label version 1", func() (int64, error) {
			out, err := c.LabelParameterVersion(ctx(t), &ssm.LabelParameterVersionInput{Name: aws.String("/app/new"), ParameterVersion: aws.Int64(1), Labels: []string{"blue", "aws-reserved"}})
			if err == nil && !slices.Equal(out.InvalidLabels, []string{"aws-reserved"}) {
				return 0, fmt.Errorf("InvalidLabels %v", out.InvalidLabels)
			}
			if err != nil {
				return 0, err
			}
			return out.ParameterVersion, nil
		}, 1, ""},
		{"label missing parameter", func() (int64, error) {
			_, err := c.LabelParameterVersion(ctx(t), &ssm.LabelParameterVersionInput{Name: aws.String("/app/none"), Labels: []string{"blue"}})
			return 0, err
		}, 0, "ParameterNotFound"},
	}
	for _, st := range steps {
		ver, err := st.do()
		if got := errCode(t, err); got != st.wantCode {
			t.Fatalf("%s: error code %q, want %q (%v)", st.name, got, st.wantCode, err)
		}
		if ver != st.wantVer {
			t.Fatalf("%s: version %d, want %d", st.name, ver, st.wantVer)
		}
	}
	read := func(sel string) string {
		out, err := c.GetParameter(ctx(t), &ssm.GetParameterInput{Name: aws.String("/app/new" + sel)})
		if err != nil {
			t.Fatalf("GetParameter(%s): %v", sel, err)
		}
		return aws.ToString(out.Parameter.Value)
	}
	if got := read(""); got != "2" {
		t.Fatalf("latest = %q", got)
	}
	if got := read(":blue"); got != "1" {
		t.Fatalf(":blue = %q", got)
	}
	// Moving a label to another version detaches it from the first.
	if err := e.s.LabelParameterVersion(east, "/app/new", 2, "blue"); err != nil {
		t.Fatal(err)
	}
	if got := read(":blue"); got != "2" {
		t.Fatalf(":blue after move = %q", got)
	}

	libErrs := map[string]struct {
		name    string
		version int64
		labels  []string
		want    error
	}{
		"missing parameter": {"/app/none", 1, []string{"x"}, store.ErrNotFound},
		"missing version":   {"/app/new", 9, []string{"x"}, store.ErrNotFound},
		"numeric label":     {"/app/new", 1, []string{"1abc"}, store.ErrInvalid},
		"reserved prefix":   {"/app/new", 1, []string{"ssmlabel"}, store.ErrInvalid},
		"eleven labels":     {"/app/new", 1, []string{"l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9", "l10", "l11"}, store.ErrInvalid},
		"latest by zero":    {"/app/new", 0, []string{"green"}, nil},
		"bad characters":    {"/app/new", 1, []string{"a b"}, store.ErrInvalid},
	}
	for name, tc := range libErrs {
		t.Run(name, func(t *testing.T) {
			if err := e.s.LabelParameterVersion(east, tc.name, tc.version, tc.labels...); !errors.Is(err, tc.want) && (err != nil || tc.want != nil) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func version(out *ssm.PutParameterOutput, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return out.Version, nil
}

package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

func TestGetSecretValue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion)
	arn, v1 := e.s.CreateSecret(east, "app/db", store.Value{String: "v1"})
	v2, err := e.s.PutSecretValue(east, "app/db", store.Value{String: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	bin := []byte{0, 1, 2, 0xff, '\n'}
	e.s.CreateSecret(east, "app/bin", store.Value{Binary: bin})
	bin[0] = 'X' // the store keeps its own copy
	e.s.CreateSecret(east, "app/empty-bin", store.Value{Binary: []byte{}})
	westARN, _ := e.s.CreateSecret(west, "app/db", store.Value{String: "west"})
	e.s.CreateSecret(east, "other/db", store.Value{String: "nope"})
	creds := e.assume(appRole, appSA)

	if !regexp.MustCompile(`^arn:aws:secretsmanager:us-east-1:` + acct + `:secret:app/db-[A-Za-z0-9]{6}$`).MatchString(arn) {
		t.Fatalf("ARN %q has the wrong shape", arn)
	}
	tests := map[string]struct {
		region      string
		in          secretsmanager.GetSecretValueInput
		wantString  string
		wantBinary  []byte
		wantVersion string
		wantCode    string
	}{
		"name gives AWSCURRENT":        {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db")}, wantString: "v2", wantVersion: v2},
		"full ARN":                     {in: secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)}, wantString: "v2", wantVersion: v2},
		"partial ARN":                  {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("arn:aws:secretsmanager:us-east-1:" + acct + ":secret:app/db")}, wantString: "v2", wantVersion: v2},
		"AWSPREVIOUS stage":            {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionStage: aws.String("AWSPREVIOUS")}, wantString: "v1", wantVersion: v1},
		"version ID":                   {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionId: aws.String(v1)}, wantString: "v1", wantVersion: v1},
		"version ID and its stage":     {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionId: aws.String(v1), VersionStage: aws.String("AWSPREVIOUS")}, wantString: "v1", wantVersion: v1},
		"version ID with wrong stage":  {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionId: aws.String(v1), VersionStage: aws.String("AWSCURRENT")}, wantCode: "ResourceNotFoundException"},
		"unknown version ID":           {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionId: aws.String("00000000-0000-4000-8000-000000000000")}, wantCode: "ResourceNotFoundException"},
		"unattached stage":             {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionStage: aws.String("AWSPENDING")}, wantCode: "ResourceNotFoundException"},
		"binary secret":                {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/bin")}, wantBinary: []byte{0, 1, 2, 0xff, '\n'}},
		"empty binary secret":          {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/empty-bin")}, wantBinary: []byte{}},
		"missing secret":               {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/missing")}, wantCode: "ResourceNotFoundException"},
		"ARN of another region":        {in: secretsmanager.GetSecretValueInput{SecretId: aws.String(westARN)}, wantCode: "ResourceNotFoundException"},
		"same name in another region":  {region: west, in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db")}, wantString: "west"},
		"ARN with wrong random suffix": {in: secretsmanager.GetSecretValueInput{SecretId: aws.String(arn[:len(arn)-6] + "zzzzzz")}, wantCode: "ResourceNotFoundException"},
		"forbidden secret":             {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("other/db")}, wantCode: "AccessDeniedException"},
		"forbidden missing secret":     {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("other/none")}, wantCode: "AccessDeniedException"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			region := tc.region
			if region == "" {
				region = east
			}
			out, err := e.sm(region, creds).GetSecretValue(ctx(t), &tc.in)
			if got := errCode(t, err); got != tc.wantCode {
				t.Fatalf("error code %q, want %q (err %v)", got, tc.wantCode, err)
			}
			if tc.wantCode == "ResourceNotFoundException" {
				var rnf *smtypes.ResourceNotFoundException
				if !errors.As(err, &rnf) {
					t.Errorf("SDK did not decode a typed ResourceNotFoundException: %T", err)
				}
			}
			if err != nil {
				return
			}
			if tc.wantBinary != nil {
				if out.SecretString != nil || out.SecretBinary == nil || !bytes.Equal(out.SecretBinary, tc.wantBinary) {
					t.Errorf("binary = %v (string %v), want %v", out.SecretBinary, out.SecretString, tc.wantBinary)
				}
			} else if aws.ToString(out.SecretString) != tc.wantString || out.SecretBinary != nil {
				t.Errorf("SecretString = %q, want %q", aws.ToString(out.SecretString), tc.wantString)
			}
			if tc.wantVersion != "" && aws.ToString(out.VersionId) != tc.wantVersion {
				t.Errorf("VersionId = %s, want %s", aws.ToString(out.VersionId), tc.wantVersion)
			}
			if !strings.HasPrefix(aws.ToString(out.ARN), "arn:aws:secretsmanager:"+region+":") || aws.ToString(out.Name) == "" {
				t.Errorf("ARN %q / Name %q", aws.ToString(out.ARN), aws.ToString(out.Name))
			}
		})
	}
}

// TestRotationStages: every new version takes AWSCURRENT and hands
// AWSPREVIOUS to the version that had it, as DescribeSecret reports.
func TestRotationStages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion)
	arn, v1 := e.s.CreateSecret(east, "app/rot", store.Value{String: "one"})
	e.s.CreateSecret(east, "other/rot", store.Value{String: "x"})
	c := e.sm(east, e.assume(appRole, appSA))
	describe := func(id string) (map[string][]string, string) {
		t.Helper()
		out, err := c.DescribeSecret(ctx(t), &secretsmanager.DescribeSecretInput{SecretId: aws.String(id)})
		if err != nil {
			return nil, errCode(t, err)
		}
		if aws.ToString(out.ARN) != arn || aws.ToString(out.Name) != "app/rot" {
			t.Errorf("DescribeSecret names %s %s", aws.ToString(out.ARN), aws.ToString(out.Name))
		}
		return out.VersionIdsToStages, ""
	}
	if got, _ := describe("app/rot"); fmt.Sprint(got) != fmt.Sprint(map[string][]string{v1: {"AWSCURRENT"}}) {
		t.Fatalf("one version: %v", got)
	}
	v2, err := e.s.PutSecretValue(east, arn, store.Value{String: "two"})
	if err != nil {
		t.Fatal(err)
	}
	_, v3 := e.s.CreateSecret(east, "app/rot", store.Value{String: "three"}) // an existing secret: a new version
	want := map[string][]string{v3: {"AWSCURRENT"}, v2: {"AWSPREVIOUS"}}
	if got, _ := describe(arn); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("VersionIdsToStages = %v, want %v (v1 %s keeps no stage)", got, want, v1)
	}
	if val, id, _ := getSecret(t, c, "app/rot", "AWSPREVIOUS"); val != "two" || id != v2 {
		t.Fatalf("AWSPREVIOUS = %s/%s, want two/%s", val, id, v2)
	}
	for id, code := range map[string]string{"app/none": "ResourceNotFoundException", "other/rot": "AccessDeniedException"} {
		if _, got := describe(id); got != code {
			t.Errorf("DescribeSecret(%s): %q, want %s", id, got, code)
		}
	}
	if _, err := e.s.PutSecretValue(east, "app/none", store.Value{String: "x"}); err == nil {
		t.Fatal("PutSecretValue made a missing secret")
	}
}

func TestBatchGetSecretValue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion)
	var ids, values []string
	for i := range 21 {
		id := fmt.Sprintf("app/s%02d", i)
		e.s.CreateSecret(east, id, store.Value{String: "value-" + id})
		ids, values = append(ids, id), append(values, "value-"+id)
	}
	aARN, _ := e.s.CreateSecret(east, "app/a", store.Value{String: "a"})
	e.s.PutSecretValue(east, "app/a", store.Value{String: "a2"})
	e.s.CreateSecret(east, "other/forbidden", store.Value{String: "f"})
	c := e.sm(east, e.assume(appRole, appSA))
	type batchErr struct{ id, code string }
	tests := map[string]struct {
		ids        []string
		wantCode   string
		wantValues []string // SecretString of SecretValues, in order
		wantErrors []batchErr
	}{
		"current of found, missing and forbidden": {
			ids:        []string{"app/a", "app/missing", "other/forbidden", aARN},
			wantValues: []string{"a2", "a2"},
			wantErrors: []batchErr{{"app/missing", "ResourceNotFoundException"}, {"other/forbidden", "AccessDeniedException"}},
		},
		"exactly 20":      {ids: ids[:20], wantValues: values[:20]},
		"21 ids rejected": {ids: ids, wantCode: "ValidationException"},
		"no ids":          {wantCode: "InvalidParameterException"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := c.BatchGetSecretValue(ctx(t), &secretsmanager.BatchGetSecretValueInput{SecretIdList: tc.ids})
			if got := errCode(t, err); got != tc.wantCode {
				t.Fatalf("error code %q, want %q (%v)", got, tc.wantCode, err)
			}
			if err != nil {
				return
			}
			var vals []string
			for _, v := range out.SecretValues {
				vals = append(vals, aws.ToString(v.SecretString))
				if v.ARN == nil || v.Name == nil || v.VersionId == nil {
					t.Errorf("entry %+v incomplete", v)
				}
			}
			if !slices.Equal(vals, tc.wantValues) {
				t.Errorf("values %v, want %v", vals, tc.wantValues)
			}
			var errs []batchErr
			for _, be := range out.Errors {
				errs = append(errs, batchErr{aws.ToString(be.SecretId), aws.ToString(be.ErrorCode)})
			}
			if !slices.Equal(errs, tc.wantErrors) {
				t.Errorf("errors %v, want %v", errs, tc.wantErrors)
			}
			if out.NextToken != nil {
				t.Errorf("NextToken %q: a SecretIdList is answered in one page", *out.NextToken)
			}
		})
	}
}

func TestPerRegionData(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion, "arn:aws:ssm:*:"+acct+":parameter/app/*")
	e.s.CreateSecret(east, "app/only-east", store.Value{String: "e"})
	e.s.PutParameter(west, "/app/only-west", "w", "String")
	creds := e.assume(appRole, appSA)
	tests := map[string]struct {
		region, kind, name string
		found              bool
	}{
		"secret in its region":        {east, "secret", "app/only-east", true},
		"secret elsewhere":            {west, "secret", "app/only-east", false},
		"parameter in its region":     {west, "param", "/app/only-west", true},
		"parameter elsewhere":         {east, "param", "/app/only-west", false},
		"secret in a third region":    {"ap-south-1", "secret", "app/only-east", false},
		"parameter in a third region": {"ap-south-1", "param", "/app/only-west", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var found bool
			if tc.kind == "secret" {
				_, _, code := getSecret(t, e.sm(tc.region, creds), tc.name, "")
				if code != "" && code != "ResourceNotFoundException" {
					t.Fatal(code)
				}
				found = code == ""
			} else {
				out, err := e.ssm(tc.region, creds).GetParameters(ctx(t), ssmNames(tc.name))
				if err != nil {
					t.Fatal(err)
				}
				found = len(out.Parameters) == 1
			}
			if found != tc.found {
				t.Fatalf("found = %v, want %v", found, tc.found)
			}
		})
	}
}

// TestConcurrentRotation runs readers against writers (under -race it is
// the fake's data race test): every read sees one whole version, and at the
// end exactly one version is AWSCURRENT and one AWSPREVIOUS.
func TestConcurrentRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion, "arn:aws:ssm:*:"+acct+":parameter/*")
	e.s.CreateSecret(east, "app/hot", store.Value{String: "v-0"})
	creds := e.assume(appRole, appSA)
	sm, ps := e.sm(east, creds), e.ssm(east, creds)
	e.s.ResetCalls()
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for i := range n {
		wg.Add(3)
		go func() {
			defer wg.Done()
			if _, err := e.s.PutSecretValue(east, "app/hot", store.Value{String: fmt.Sprint("v-", i+1)}); err != nil {
				errs <- err
			}
			e.s.PutParameter(east, "/p", fmt.Sprint(i), "")
		}()
		go func() {
			defer wg.Done()
			out, err := sm.BatchGetSecretValue(ctx(t), &secretsmanager.BatchGetSecretValueInput{SecretIdList: []string{"app/hot"}})
			if err == nil && (len(out.SecretValues) != 1 || !regexp.MustCompile(`^v-\d+$`).MatchString(aws.ToString(out.SecretValues[0].SecretString))) {
				err = fmt.Errorf("batch read %+v", out)
			}
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_, err := sm.DescribeSecret(ctx(t), &secretsmanager.DescribeSecretInput{SecretId: aws.String("app/hot")})
			if err == nil {
				_, err = ps.GetParameters(ctx(t), ssmNames("/p"))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := e.s.Calls("secretsmanager.BatchGetSecretValue") + e.s.Calls("secretsmanager.DescribeSecret") + e.s.Calls("ssm.GetParameters"); got != 3*n {
		t.Fatalf("counted %d calls, want %d", got, 3*n)
	}
	out, err := sm.DescribeSecret(ctx(t), &secretsmanager.DescribeSecretInput{SecretId: aws.String("app/hot")})
	if err != nil {
		t.Fatal(err)
	}
	var stages []string
	for _, st := range out.VersionIdsToStages {
		stages = append(stages, st...)
	}
	slices.Sort(stages)
	if !slices.Equal(stages, []string{"AWSCURRENT", "AWSPREVIOUS"}) {
		t.Fatalf("stages after %d rotations: %v", n, out.VersionIdsToStages)
	}
}

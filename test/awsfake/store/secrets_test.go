package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

const smAllowAnyRegion = "arn:aws:secretsmanager:*:" + acct + ":secret:app/*"

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
		wantStages  []string
		wantCode    string
	}{
		"name gives AWSCURRENT":        {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db")}, wantString: "v2", wantVersion: v2, wantStages: []string{"AWSCURRENT"}},
		"full ARN":                     {in: secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)}, wantString: "v2", wantVersion: v2},
		"partial ARN":                  {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("arn:aws:secretsmanager:us-east-1:" + acct + ":secret:app/db")}, wantString: "v2", wantVersion: v2},
		"AWSPREVIOUS stage":            {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionStage: aws.String("AWSPREVIOUS")}, wantString: "v1", wantVersion: v1, wantStages: []string{"AWSPREVIOUS"}},
		"version ID":                   {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionId: aws.String(v1)}, wantString: "v1", wantVersion: v1},
		"version ID and its stage":     {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionId: aws.String(v1), VersionStage: aws.String("AWSPREVIOUS")}, wantString: "v1", wantVersion: v1},
		"version ID with wrong stage":  {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionId: aws.String(v1), VersionStage: aws.String("AWSCURRENT")}, wantCode: "ResourceNotFoundException"},
		"unknown version ID":           {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionId: aws.String("00000000-0000-4000-8000-000000000000")}, wantCode: "ResourceNotFoundException"},
		"unattached stage":             {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db"), VersionStage: aws.String("AWSPENDING")}, wantCode: "ResourceNotFoundException"},
		"binary secret":                {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/bin")}, wantBinary: bin},
		"empty binary secret":          {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/empty-bin")}, wantBinary: []byte{}},
		"missing secret":               {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/missing")}, wantCode: "ResourceNotFoundException"},
		"ARN of another region":        {in: secretsmanager.GetSecretValueInput{SecretId: aws.String(westARN)}, wantCode: "ResourceNotFoundException"},
		"same name in another region":  {region: west, in: secretsmanager.GetSecretValueInput{SecretId: aws.String("app/db")}, wantString: "west"},
		"ARN with wrong random suffix": {in: secretsmanager.GetSecretValueInput{SecretId: aws.String(arn[:len(arn)-6] + "zzzzzz")}, wantCode: "ResourceNotFoundException"},
		"forbidden secret":             {in: secretsmanager.GetSecretValueInput{SecretId: aws.String("other/db")}, wantCode: "AccessDeniedException"},
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
			if tc.wantCode != "" {
				if tc.wantCode == "ResourceNotFoundException" {
					var rnf *smtypes.ResourceNotFoundException
					if !errors.As(err, &rnf) {
						t.Errorf("SDK did not decode a typed ResourceNotFoundException: %T", err)
					}
				}
				return
			}
			if tc.wantBinary != nil {
				if out.SecretString != nil || !bytes.Equal(out.SecretBinary, tc.wantBinary) || out.SecretBinary == nil {
					t.Errorf("binary = %v (string %v), want %v", out.SecretBinary, out.SecretString, tc.wantBinary)
				}
			} else if aws.ToString(out.SecretString) != tc.wantString || out.SecretBinary != nil {
				t.Errorf("SecretString = %q, want %q", aws.ToString(out.SecretString), tc.wantString)
			}
			if tc.wantVersion != "" && aws.ToString(out.VersionId) != tc.wantVersion {
				t.Errorf("VersionId = %s, want %s", aws.ToString(out.VersionId), tc.wantVersion)
			}
			if tc.wantStages != nil && !slices.Equal(out.VersionStages, tc.wantStages) {
				t.Errorf("VersionStages = %v, want %v", out.VersionStages, tc.wantStages)
			}
			if !strings.HasPrefix(aws.ToString(out.ARN), "arn:aws:secretsmanager:"+region+":") || aws.ToString(out.Name) == "" {
				t.Errorf("ARN %q / Name %q", aws.ToString(out.ARN), aws.ToString(out.Name))
			}
			if out.CreatedDate == nil || time.Since(*out.CreatedDate).Abs() > time.Minute {
				t.Errorf("CreatedDate = %v, want about now", out.CreatedDate)
			}
		})
	}
}

func TestSecretRotationStages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion)
	_, v1 := e.s.CreateSecret(east, "app/rot", store.Value{String: "one"})
	c := e.sm(east, e.assume(appRole, appSA))

	get := func(t *testing.T, stage string) (string, string) {
		t.Helper()
		out, err := c.GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/rot"), VersionStage: aws.String(stage)})
		if err != nil {
			t.Fatalf("GetSecretValue(%s): %v", stage, err)
		}
		return aws.ToString(out.SecretString), aws.ToString(out.VersionId)
	}
	stages := func(t *testing.T) map[string][]string {
		t.Helper()
		out, err := c.DescribeSecret(ctx(t), &secretsmanager.DescribeSecretInput{SecretId: aws.String("app/rot")})
		if err != nil {
			t.Fatal(err)
		}
		return out.VersionIdsToStages
	}

	// Library PutSecretValue: one -> two.
	v2, err := e.s.PutSecretValue(east, "app/rot", store.Value{String: "two"})
	if err != nil {
		t.Fatal(err)
	}
	if val, id := get(t, "AWSCURRENT"); val != "two" || id != v2 {
		t.Fatalf("current = %s/%s, want two/%s", val, id, v2)
	}
	if val, id := get(t, "AWSPREVIOUS"); val != "one" || id != v1 {
		t.Fatalf("previous = %s/%s, want one/%s", val, id, v1)
	}

	// Wire PutSecretValue: two -> three; v1 loses every stage.
	put, err := c.PutSecretValue(ctx(t), &secretsmanager.PutSecretValueInput{SecretId: aws.String("app/rot"), SecretString: aws.String("three")})
	if err != nil {
		t.Fatal(err)
	}
	v3 := aws.ToString(put.VersionId)
	if !slices.Equal(put.VersionStages, []string{"AWSCURRENT"}) {
		t.Errorf("PutSecretValue stages = %v", put.VersionStages)
	}
	want := map[string][]string{v3: {"AWSCURRENT"}, v2: {"AWSPREVIOUS"}}
	if got := stages(t); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("VersionIdsToStages = %v, want %v", got, want)
	}

	// Idempotent ClientRequestToken.
	tok := "11111111-2222-4333-8444-555555555555"
	for i := 0; i < 2; i++ {
		out, err := c.PutSecretValue(ctx(t), &secretsmanager.PutSecretValueInput{SecretId: aws.String("app/rot"), SecretString: aws.String("pending"), ClientRequestToken: aws.String(tok), VersionStages: []string{"AWSPENDING"}})
		if err != nil || aws.ToString(out.VersionId) != tok {
			t.Fatalf("put #%d with token: %v %v", i, out, err)
		}
	}
	_, err = c.PutSecretValue(ctx(t), &secretsmanager.PutSecretValueInput{SecretId: aws.String("app/rot"), SecretString: aws.String("different"), ClientRequestToken: aws.String(tok)})
	if got := errCode(t, err); got != "ResourceExistsException" {
		t.Fatalf("reusing a token with another value: %q", got)
	}
	if val, _ := get(t, "AWSCURRENT"); val != "three" {
		t.Fatalf("AWSPENDING put moved AWSCURRENT: %s", val)
	}

	// Wire UpdateSecretVersionStage needs RemoveFromVersionId, as in AWS.
	_, err = c.UpdateSecretVersionStage(ctx(t), &secretsmanager.UpdateSecretVersionStageInput{SecretId: aws.String("app/rot"), VersionStage: aws.String("AWSCURRENT"), MoveToVersionId: aws.String(tok)})
	if got := errCode(t, err); got != "InvalidParameterException" {
		t.Fatalf("move without RemoveFromVersionId: %q", got)
	}
	_, err = c.UpdateSecretVersionStage(ctx(t), &secretsmanager.UpdateSecretVersionStageInput{SecretId: aws.String("app/rot"), VersionStage: aws.String("AWSCURRENT"), MoveToVersionId: aws.String(tok), RemoveFromVersionId: aws.String(v3)})
	if err != nil {
		t.Fatal(err)
	}
	if val, _ := get(t, "AWSCURRENT"); val != "pending" {
		t.Fatalf("current after stage move = %s", val)
	}
	if val, _ := get(t, "AWSPREVIOUS"); val != "three" {
		t.Fatalf("previous after stage move = %s", val)
	}
	_, err = c.UpdateSecretVersionStage(ctx(t), &secretsmanager.UpdateSecretVersionStageInput{SecretId: aws.String("app/rot"), VersionStage: aws.String("AWSCURRENT"), RemoveFromVersionId: aws.String(tok)})
	if got := errCode(t, err); got != "InvalidParameterException" {
		t.Fatalf("removing AWSCURRENT outright: %q", got)
	}

	// Library UpdateSecretVersionStage: roll back to v1 without naming the holder.
	if err := e.s.UpdateSecretVersionStage(east, "app/rot", "AWSCURRENT", v1); err != nil {
		t.Fatal(err)
	}
	if val, _ := get(t, "AWSCURRENT"); val != "one" {
		t.Fatalf("current after rollback = %s", val)
	}
	if val, _ := get(t, "AWSPREVIOUS"); val != "pending" {
		t.Fatalf("previous after rollback = %s", val)
	}
	if err := e.s.UpdateSecretVersionStage(east, "app/rot", "AWSCURRENT", "no-such-version"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown version: %v", err)
	}
	if _, err := e.s.PutSecretValue(east, "app/none", store.Value{String: "x"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("PutSecretValue on missing secret: %v", err)
	}
	info, ok := e.s.Secret(east, "app/rot")
	if !ok || len(info.Versions) != 4 || !slices.Equal(info.Versions[v1], []string{"AWSCURRENT"}) {
		t.Fatalf("Secret() = %+v", info)
	}
}

func TestCreateSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion)
	c := e.sm(east, e.assume(appRole, appSA))
	tests := map[string]struct {
		in       secretsmanager.CreateSecretInput
		wantCode string
		read     *secretsmanager.GetSecretValueOutput // expected value, nil = no value
	}{
		"string":           {in: secretsmanager.CreateSecretInput{Name: aws.String("app/new"), SecretString: aws.String("s")}, read: &secretsmanager.GetSecretValueOutput{SecretString: aws.String("s")}},
		"binary":           {in: secretsmanager.CreateSecretInput{Name: aws.String("app/newbin"), SecretBinary: []byte{9, 8}}, read: &secretsmanager.GetSecretValueOutput{SecretBinary: []byte{9, 8}}},
		"without a value":  {in: secretsmanager.CreateSecretInput{Name: aws.String("app/novalue")}},
		"both kinds":       {in: secretsmanager.CreateSecretInput{Name: aws.String("app/both"), SecretString: aws.String("s"), SecretBinary: []byte{1}}, wantCode: "InvalidParameterException"},
		"invalid name":     {in: secretsmanager.CreateSecretInput{Name: aws.String("app/bad name"), SecretString: aws.String("s")}, wantCode: "InvalidParameterException"},
		"existing name":    {in: secretsmanager.CreateSecretInput{Name: aws.String("app/existing"), SecretString: aws.String("s")}, wantCode: "ResourceExistsException"},
		"outside the role": {in: secretsmanager.CreateSecretInput{Name: aws.String("other/x"), SecretString: aws.String("s")}, wantCode: "AccessDeniedException"},
	}
	e.s.CreateSecret(east, "app/existing", store.Value{String: "old"})
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := c.CreateSecret(ctx(t), &tc.in)
			if got := errCode(t, err); got != tc.wantCode {
				t.Fatalf("error code %q, want %q (%v)", got, tc.wantCode, err)
			}
			if err != nil {
				return
			}
			if aws.ToString(out.Name) != *tc.in.Name || !strings.HasPrefix(aws.ToString(out.ARN), "arn:aws:secretsmanager:us-east-1:"+acct+":secret:"+*tc.in.Name+"-") {
				t.Errorf("CreateSecret output %s / %s", aws.ToString(out.Name), aws.ToString(out.ARN))
			}
			got, err := c.GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: out.ARN})
			if tc.read == nil {
				if code := errCode(t, err); code != "ResourceNotFoundException" {
					t.Fatalf("reading a secret without value: %q", code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if aws.ToString(got.VersionId) != aws.ToString(out.VersionId) || aws.ToString(got.SecretString) != aws.ToString(tc.read.SecretString) || !bytes.Equal(got.SecretBinary, tc.read.SecretBinary) {
				t.Errorf("read back %+v, want %+v", got, tc.read)
			}
		})
	}
}

func TestBatchGetSecretValue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion)
	var ids []string
	for i := 0; i < 25; i++ {
		id := fmt.Sprintf("app/s%02d", i)
		e.s.CreateSecret(east, id, store.Value{String: "value-" + id})
		ids = append(ids, id)
	}
	aARN, _ := e.s.CreateSecret(east, "app/a", store.Value{String: "a"})
	e.s.CreateSecret(east, "other/forbidden", store.Value{String: "f"})
	c := e.sm(east, e.assume(appRole, appSA))
	type batchErr struct{ id, code string }
	tests := map[string]struct {
		in         secretsmanager.BatchGetSecretValueInput
		wantCode   string
		wantValues []string // SecretString of SecretValues, in order
		wantErrors []batchErr
		wantNext   bool
	}{
		"found, missing and forbidden": {
			in:         secretsmanager.BatchGetSecretValueInput{SecretIdList: []string{"app/a", "app/missing", "other/forbidden", aARN}},
			wantValues: []string{"a", "a"},
			wantErrors: []batchErr{{"app/missing", "ResourceNotFoundException"}, {"other/forbidden", "AccessDeniedException"}},
		},
		"exactly 20":         {in: secretsmanager.BatchGetSecretValueInput{SecretIdList: ids[:20]}, wantValues: valuesOf(ids[:20])},
		"21 ids rejected":    {in: secretsmanager.BatchGetSecretValueInput{SecretIdList: ids[:21]}, wantCode: "ValidationException"},
		"no ids nor filters": {in: secretsmanager.BatchGetSecretValueInput{}, wantCode: "InvalidParameterException"},
		"name filter page": {
			in:         secretsmanager.BatchGetSecretValueInput{Filters: []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{"app/s1"}}}, MaxResults: aws.Int32(3)},
			wantValues: valuesOf(ids[10:13]), wantNext: true,
		},
		"filter includes forbidden as error": {
			in:         secretsmanager.BatchGetSecretValueInput{Filters: []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{"other/"}}}},
			wantErrors: []batchErr{{"other/forbidden", "AccessDeniedException"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := c.BatchGetSecretValue(ctx(t), &tc.in)
			if got := errCode(t, err); got != tc.wantCode {
				t.Fatalf("error code %q, want %q (%v)", got, tc.wantCode, err)
			}
			if err != nil {
				return
			}
			var vals []string
			for _, v := range out.SecretValues {
				vals = append(vals, aws.ToString(v.SecretString))
				if len(v.VersionStages) != 1 || v.VersionStages[0] != "AWSCURRENT" || v.CreatedDate == nil || v.ARN == nil {
					t.Errorf("entry %+v incomplete", v)
				}
			}
			if !slices.Equal(vals, tc.wantValues) {
				t.Errorf("values %v, want %v", vals, tc.wantValues)
			}
			var errs []batchErr
			for _, be := range out.Errors {
				errs = append(errs, batchErr{aws.ToString(be.SecretId), aws.ToString(be.ErrorCode)})
				if aws.ToString(be.Message) == "" {
					t.Errorf("error entry without message: %+v", be)
				}
			}
			if !slices.Equal(errs, tc.wantErrors) {
				t.Errorf("errors %v, want %v", errs, tc.wantErrors)
			}
			if (out.NextToken != nil) != tc.wantNext {
				t.Errorf("NextToken = %v, want present=%v", out.NextToken, tc.wantNext)
			}
		})
	}

	t.Run("pagination covers every match once", func(t *testing.T) {
		var got []string
		in := &secretsmanager.BatchGetSecretValueInput{Filters: []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{"app/s"}}}, MaxResults: aws.Int32(7)}
		p := secretsmanager.NewBatchGetSecretValuePaginator(c, in)
		for p.HasMorePages() {
			out, err := p.NextPage(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range out.SecretValues {
				got = append(got, aws.ToString(v.Name))
			}
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("paginated names %v, want %v", got, ids)
		}
	})
}

func valuesOf(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = "value-" + id
	}
	return out
}

func TestDescribeSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion)
	arn, v1 := e.s.CreateSecret(east, "app/d", store.Value{String: "1"})
	v2, _ := e.s.PutSecretValue(east, "app/d", store.Value{String: "2"})
	e.s.CreateSecret(east, "other/d", store.Value{String: "x"})
	c := e.sm(east, e.assume(appRole, appSA))
	tests := map[string]struct {
		id       string
		wantCode string
	}{
		"by name":   {id: "app/d"},
		"by ARN":    {id: arn},
		"missing":   {id: "app/none", wantCode: "ResourceNotFoundException"},
		"forbidden": {id: "other/d", wantCode: "AccessDeniedException"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := c.DescribeSecret(ctx(t), &secretsmanager.DescribeSecretInput{SecretId: aws.String(tc.id)})
			if got := errCode(t, err); got != tc.wantCode {
				t.Fatalf("error code %q, want %q", got, tc.wantCode)
			}
			if err != nil {
				return
			}
			want := map[string][]string{v1: {"AWSPREVIOUS"}, v2: {"AWSCURRENT"}}
			if aws.ToString(out.ARN) != arn || aws.ToString(out.Name) != "app/d" || fmt.Sprint(out.VersionIdsToStages) != fmt.Sprint(want) {
				t.Errorf("DescribeSecret = %s %s %v", aws.ToString(out.ARN), aws.ToString(out.Name), out.VersionIdsToStages)
			}
			if out.LastChangedDate == nil || out.CreatedDate == nil || out.LastChangedDate.Before(*out.CreatedDate) {
				t.Errorf("dates: created %v changed %v", out.CreatedDate, out.LastChangedDate)
			}
		})
	}
}

func TestDeleteSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion)
	c := e.sm(east, e.assume(appRole, appSA))
	getCode := func(t *testing.T, id string) string {
		_, err := c.GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
		return errCode(t, err)
	}

	t.Run("recovery window keeps the name but blocks reads", func(t *testing.T) {
		e.s.CreateSecret(east, "app/win", store.Value{String: "x"})
		out, err := c.DeleteSecret(ctx(t), &secretsmanager.DeleteSecretInput{SecretId: aws.String("app/win"), RecoveryWindowInDays: aws.Int64(7)})
		if err != nil || out.DeletionDate == nil || out.DeletionDate.Sub(time.Now()) < 6*24*time.Hour {
			t.Fatalf("DeleteSecret: %+v %v", out, err)
		}
		if got := getCode(t, "app/win"); got != "InvalidRequestException" {
			t.Fatalf("read after scheduled deletion: %q", got)
		}
		_, err = c.CreateSecret(ctx(t), &secretsmanager.CreateSecretInput{Name: aws.String("app/win"), SecretString: aws.String("y")})
		if got := errCode(t, err); got != "InvalidRequestException" {
			t.Fatalf("re-create during recovery window: %q", got)
		}
		d, err := c.DescribeSecret(ctx(t), &secretsmanager.DescribeSecretInput{SecretId: aws.String("app/win")})
		if err != nil || d.DeletedDate == nil {
			t.Fatalf("DescribeSecret of deleted secret: %+v %v", d, err)
		}
	})
	t.Run("force delete frees the name", func(t *testing.T) {
		arn, _ := e.s.CreateSecret(east, "app/force", store.Value{String: "x"})
		if _, err := c.DeleteSecret(ctx(t), &secretsmanager.DeleteSecretInput{SecretId: aws.String(arn), ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
			t.Fatal(err)
		}
		if got := getCode(t, "app/force"); got != "ResourceNotFoundException" {
			t.Fatalf("read after force delete: %q", got)
		}
	})
	t.Run("library delete, then a new ARN on re-create", func(t *testing.T) {
		arn1, _ := e.s.CreateSecret(east, "app/lib", store.Value{String: "x"})
		if err := e.s.DeleteSecret(east, "app/lib"); err != nil {
			t.Fatal(err)
		}
		if got := getCode(t, arn1); got != "ResourceNotFoundException" {
			t.Fatalf("read after library delete: %q", got)
		}
		if err := e.s.DeleteSecret(east, "app/lib"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		arn2, _ := e.s.CreateSecret(east, "app/lib", store.Value{String: "y"})
		if arn1 == arn2 {
			t.Fatalf("re-created secret reused ARN %s", arn1)
		}
		if got := getCode(t, arn1); got != "ResourceNotFoundException" {
			t.Fatalf("old ARN still resolves after re-create: %q", got)
		}
	})
}

func TestPerRegionData(t *testing.T) {
	t.Parallel()
	e := newEnv(t, store.Options{})
	e.role(appRole, smAllowAnyRegion, "arn:aws:ssm:*:"+acct+":parameter/app/*")
	e.s.CreateSecret(east, "app/only-east", store.Value{String: "e"})
	e.s.PutParameter(west, "/app/only-west", "w", store.TypeString)
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
				_, err := e.sm(tc.region, creds).GetSecretValue(ctx(t), &secretsmanager.GetSecretValueInput{SecretId: aws.String(tc.name)})
				if code := errCode(t, err); code != "" && code != "ResourceNotFoundException" {
					t.Fatal(err)
				}
				found = err == nil
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

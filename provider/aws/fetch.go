package aws

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/podsecrets/podsecrets/internal/logkey"
	"github.com/podsecrets/podsecrets/provider"
)

// Store API limits.
const (
	smBatchSize  = 20 // BatchGetSecretValue SecretIdList
	ssmBatchSize = 10 // GetParameters Names
	maxBatchPage = 10 // NextToken pages followed for one BatchGetSecretValue
)

// fetchKey identifies one store read; objects with equal keys share it.
type fetchKey struct {
	typ objectType
	ref
}

// keyOf is the read object o needs in the primary or failover region.
// Secrets Manager reads of AWSCURRENT are normalised to the empty label so
// that they batch together.
func keyOf(o *object, failover bool) fetchKey {
	r := o.refIn(failover)
	if o.Type == typeSecretsManager && r.Version == "" && r.Label == labelCurrent {
		r.Label = ""
	}
	return fetchKey{typ: o.Type, ref: r}
}

// batchable reports whether k can be read with BatchGetSecretValue, which
// returns AWSCURRENT only.
func (k fetchKey) batchable() bool {
	return k.typ == typeSecretsManager && k.Version == "" && k.Label == ""
}

// ssmSelector is the GetParameters name of k: name, name:version or name:label.
func (k fetchKey) ssmSelector() string {
	switch {
	case k.Version != "":
		return k.Name + ":" + k.Version
	case k.Label != "":
		return k.Name + ":" + k.Label
	}
	return k.Name
}

// describe names k's object(s) in messages.
func (k fetchKey) describe() string {
	s := fmt.Sprintf("%s %q", k.typ, k.Name)
	if k.Version != "" {
		s += fmt.Sprintf(" version %q", k.Version)
	}
	if k.Label != "" {
		s += fmt.Sprintf(" label %q", k.Label)
	}
	return s
}

// result is one fetched value.
type result struct {
	data    []byte
	id      string // ARN, or parameter name
	version string
}

// plan groups the reads of objs into store calls.
type plan struct {
	smBatches [][]fetchKey
	smSingles []fetchKey
	ssm       [][]fetchKey
	owners    map[fetchKey]*object // first object needing each key, for messages
}

func makePlan(objs []object, failover bool) *plan {
	pl := &plan{owners: map[fetchKey]*object{}}
	var batch, params []fetchKey
	for i := range objs {
		k := keyOf(&objs[i], failover)
		if _, dup := pl.owners[k]; dup {
			continue
		}
		pl.owners[k] = &objs[i]
		switch {
		case k.typ == typeSSMParameter:
			params = append(params, k)
		case k.batchable():
			batch = append(batch, k)
		default:
			pl.smSingles = append(pl.smSingles, k)
		}
	}
	pl.smBatches = chunk(batch, smBatchSize)
	pl.ssm = chunk(params, ssmBatchSize)
	return pl
}

func chunk(ks []fetchKey, n int) [][]fetchKey {
	var out [][]fetchKey
	for len(ks) > 0 {
		m := min(n, len(ks))
		out = append(out, ks[:m:m])
		ks = ks[m:]
	}
	return out
}

// fetcher runs the store calls of one region for one Fetch.
type fetcher struct {
	p        *Provider
	region   string
	who      string
	creds    aws.Credentials
	failover bool

	pl      *plan
	ctx     context.Context
	cancel  context.CancelFunc
	sem     chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
	results map[fetchKey]*result
}

// run fetches every object; the first error cancels the other calls.
func (f *fetcher) run(ctx context.Context, objs []object) (map[fetchKey]*result, error) {
	f.pl = makePlan(objs, f.failover)
	f.ctx, f.cancel = context.WithCancel(ctx)
	defer f.cancel()
	f.sem = make(chan struct{}, f.p.maxConcurrency)
	f.results = make(map[fetchKey]*result, len(f.pl.owners))

	for _, b := range f.pl.smBatches {
		f.submit(func(ctx context.Context) error { return f.smBatch(ctx, b) })
	}
	for _, k := range f.pl.smSingles {
		f.submit(func(ctx context.Context) error { return f.smSingle(ctx, k) })
	}
	for _, b := range f.pl.ssm {
		f.submit(func(ctx context.Context) error { return f.ssmBatch(ctx, b) })
	}
	f.wg.Wait()
	if f.err != nil {
		return nil, f.err
	}
	for k := range f.pl.owners {
		if f.results[k] == nil { // every call succeeded, so this is a bug
			return nil, &kindError{kind: provider.ErrUnavailable, msg: fmt.Sprintf("%s: no value was fetched", f.what(k))}
		}
	}
	return f.results, nil
}

// submit runs job when a concurrency slot is free. Jobs may submit more jobs.
func (f *fetcher) submit(job func(context.Context) error) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		select {
		case f.sem <- struct{}{}:
		case <-f.ctx.Done():
			// Either an error was recorded (fail keeps the first one) or
			// the caller gave up.
			f.fail(&kindError{kind: provider.ErrUnavailable, msg: "fetch canceled: " + f.ctx.Err().Error(), cause: f.ctx.Err()})
			return
		}
		defer func() { <-f.sem }()
		if err := f.ctx.Err(); err != nil {
			f.fail(&kindError{kind: provider.ErrUnavailable, msg: "fetch canceled: " + err.Error(), cause: err})
			return
		}
		ctx, cancel := context.WithTimeout(f.ctx, f.p.callTimeout)
		defer cancel()
		if err := job(ctx); err != nil {
			f.fail(err)
		}
	}()
}

// fail records the first error and cancels the remaining calls.
func (f *fetcher) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
		f.cancel()
	}
}

func (f *fetcher) store(k fetchKey, r *result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.results[k] = r
}

// what names the object(s) read with k, for messages.
func (f *fetcher) what(k fetchKey) string {
	s := k.describe()
	if o := f.pl.owners[k]; o != nil {
		s += fmt.Sprintf(" (objects[%d])", o.Index)
	}
	return s
}

// whatBatch names the objects of one batch call, for messages.
func (f *fetcher) whatBatch(op string, ks []fetchKey) string {
	names := make([]string, 0, 3)
	for i, k := range ks {
		if i == 3 {
			names = append(names, fmt.Sprintf("and %d more", len(ks)-3))
			break
		}
		names = append(names, strconv.Quote(k.ssmSelector()))
	}
	return fmt.Sprintf("%s of %s", op, strings.Join(names, ", "))
}

// credentials hands the SDK the pod's credentials for this fetch.
func (f *fetcher) credentials(context.Context) (aws.Credentials, error) { return f.creds, nil }

func (f *fetcher) smOptions(o *secretsmanager.Options) {
	o.Region, o.Credentials = f.region, aws.CredentialsProviderFunc(f.credentials)
}

func (f *fetcher) ssmOptions(o *ssm.Options) {
	o.Region, o.Credentials = f.region, aws.CredentialsProviderFunc(f.credentials)
}

// readError is the error of a failed read of k, from either store.
func (f *fetcher) readError(err error, k fetchKey) error {
	return storeError(err, f.what(k), f.region, f.who)
}

// smBatch reads up to 20 AWSCURRENT secrets with BatchGetSecretValue.
// Secrets the response does not account for are read one by one; so are all
// of them if the role may not call BatchGetSecretValue (policies written for
// the incumbent provider allow only GetSecretValue).
func (f *fetcher) smBatch(ctx context.Context, ks []fetchKey) error {
	if len(ks) == 1 {
		return f.smSingle(ctx, ks[0])
	}
	pending := make(map[string]fetchKey, len(ks))
	ids := make([]string, 0, len(ks))
	for _, k := range ks {
		pending[k.Name] = k
		ids = append(ids, k.Name)
	}
	var token *string
	for page := 0; page < maxBatchPage && len(pending) > 0; page++ {
		out, err := f.p.sm.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{SecretIdList: ids, NextToken: token}, f.smOptions)
		if err != nil {
			if kind, _, _ := describeErr(err); page == 0 && kind == provider.ErrPermissionDenied {
				f.p.log.Debug("aws: BatchGetSecretValue denied; reading secrets one by one", logkey.Region, f.region, logkey.Identity, f.who, logkey.ObjectCount, len(ks))
				break
			}
			return storeError(err, f.whatBatch("secretsmanager BatchGetSecretValue", ks), f.region, f.who)
		}
		for _, e := range out.Errors {
			k, ok := pending[aws.ToString(e.SecretId)]
			if !ok {
				continue
			}
			return f.readError(&apiError{code: aws.ToString(e.ErrorCode), message: aws.ToString(e.Message)}, k)
		}
		for _, v := range out.SecretValues {
			for _, id := range []string{aws.ToString(v.Name), aws.ToString(v.ARN)} {
				k, ok := pending[id]
				if !ok || id == "" {
					continue
				}
				delete(pending, id)
				f.store(k, smResult(v.SecretString, v.SecretBinary, v.ARN, v.Name, v.VersionId))
				break
			}
		}
		if out.NextToken == nil || *out.NextToken == "" {
			break
		}
		token = out.NextToken
	}
	// Whatever is left: read one by one (an id the batch answer names
	// differently, e.g. a partial ARN, or all of them after a denial).
	left := make([]fetchKey, 0, len(pending))
	for _, k := range ks {
		if _, ok := pending[k.Name]; ok {
			left = append(left, k)
		}
	}
	for _, k := range left {
		f.submit(func(ctx context.Context) error { return f.smSingle(ctx, k) })
	}
	return nil
}

// smSingle reads one secret version with GetSecretValue.
func (f *fetcher) smSingle(ctx context.Context, k fetchKey) error {
	in := &secretsmanager.GetSecretValueInput{SecretId: aws.String(k.Name)}
	if k.Version != "" {
		in.VersionId = aws.String(k.Version)
	}
	if k.Label != "" {
		in.VersionStage = aws.String(k.Label)
	}
	out, err := f.p.sm.GetSecretValue(ctx, in, f.smOptions)
	if err != nil {
		return f.readError(err, k)
	}
	f.store(k, smResult(out.SecretString, out.SecretBinary, out.ARN, out.Name, out.VersionId))
	return nil
}

func smResult(s *string, bin []byte, arn, name, version *string) *result {
	r := &result{id: aws.ToString(arn), version: aws.ToString(version)}
	if r.id == "" {
		r.id = aws.ToString(name)
	}
	if s != nil {
		r.data = []byte(*s)
	} else {
		r.data = bin
	}
	return r
}

// ssmBatch reads up to 10 parameters with GetParameters.
func (f *fetcher) ssmBatch(ctx context.Context, ks []fetchKey) error {
	names := make([]string, 0, len(ks))
	bySel := make(map[string]fetchKey, len(ks))
	for _, k := range ks {
		s := k.ssmSelector()
		names = append(names, s)
		bySel[s] = k
	}
	out, err := f.p.ssm.GetParameters(ctx, &ssm.GetParametersInput{Names: names, WithDecryption: aws.Bool(true)}, f.ssmOptions)
	if err != nil {
		if len(ks) == 1 {
			return storeError(err, f.what(ks[0]), f.region, f.who)
		}
		return storeError(err, f.whatBatch("ssm GetParameters", ks), f.region, f.who)
	}
	if len(out.InvalidParameters) > 0 {
		invalid := append([]string(nil), out.InvalidParameters...)
		sort.Strings(invalid)
		k, ok := bySel[invalid[0]]
		if !ok {
			k = fetchKey{typ: typeSSMParameter, ref: ref{Name: invalid[0]}}
		}
		msg := "parameter not found (or no such version or label)"
		if len(invalid) > 1 {
			msg += fmt.Sprintf("; also not found: %s", strings.Join(quoteAll(invalid[1:]), ", "))
		}
		return f.readError(&apiError{code: "InvalidParameters", message: msg}, k)
	}
	for _, prm := range out.Parameters {
		sel := aws.ToString(prm.Selector)
		if sel != "" && !strings.HasPrefix(sel, ":") {
			sel = ":" + sel
		}
		for _, name := range []string{aws.ToString(prm.Name), aws.ToString(prm.ARN)} {
			if name == "" {
				continue
			}
			k, ok := bySel[name+sel]
			if !ok {
				continue
			}
			delete(bySel, name+sel)
			id := aws.ToString(prm.ARN)
			if id == "" {
				id = aws.ToString(prm.Name)
			}
			f.store(k, &result{data: []byte(aws.ToString(prm.Value)), id: id, version: strconv.FormatInt(prm.Version, 10)})
			break
		}
	}
	if len(bySel) > 0 {
		missing := make([]string, 0, len(bySel))
		for s := range bySel {
			missing = append(missing, s)
		}
		sort.Strings(missing)
		return &kindError{kind: provider.ErrUnavailable, msg: fmt.Sprintf("%s in region %s as %s: the response has no value for %s",
			f.whatBatch("ssm GetParameters", ks), f.region, f.who, strings.Join(quoteAll(missing), ", "))}
	}
	return nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// buildResponse turns fetched values into the volume's files, in objects
// order, each object followed by its jmesPath files.
func buildResponse(objs []object, results map[fetchKey]*result, failover bool) (*provider.Response, error) {
	resp := &provider.Response{}
	seen := map[provider.ObjectVersion]bool{}
	for i := range objs {
		o := &objs[i]
		r := results[keyOf(o, failover)]
		resp.Files = append(resp.Files, provider.File{Path: o.Path, Mode: o.Mode, Data: bytes.Clone(r.data)})
		v := provider.ObjectVersion{ID: r.id, Version: r.version}
		if !seen[v] {
			seen[v] = true
			resp.Versions = append(resp.Versions, v)
		}
		if len(o.JMES) == 0 {
			continue
		}
		var doc any
		if err := json.Unmarshal(r.data, &doc); err != nil {
			// The decoder's message can quote the value: leave it out.
			return nil, invalidf("%s: jmesPath needs a JSON value, but the value is not valid JSON", o.describe())
		}
		for j, e := range o.JMES {
			s, err := searchString(e, doc)
			if err != nil {
				return nil, invalidf("%s: jmesPath[%d] path %q: %v", o.describe(), j, e.Expr, err)
			}
			resp.Files = append(resp.Files, provider.File{Path: e.Path, Mode: e.Mode, Data: []byte(s)})
		}
	}
	return resp, nil
}

// searchString evaluates e on doc and wants a string. Its errors never
// contain data from doc.
func searchString(e jmesEntry, doc any) (s string, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = "", fmt.Errorf("evaluation failed")
		}
	}()
	v, err := e.expr.Search(doc)
	if err != nil {
		return "", fmt.Errorf("evaluation failed") // the library's message may quote data
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case nil:
		return "", fmt.Errorf("matched nothing; want a string")
	case bool:
		return "", fmt.Errorf("result is a boolean; want a string")
	case float64:
		return "", fmt.Errorf("result is a number; want a string")
	case []any:
		return "", fmt.Errorf("result is an array; want a string")
	case map[string]any:
		return "", fmt.Errorf("result is an object; want a string")
	default:
		return "", fmt.Errorf("result is a %T; want a string", v)
	}
}

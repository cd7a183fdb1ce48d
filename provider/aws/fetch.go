package aws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

// result is one fetched value. It is shared by the Fetches that share its
// read and never modified: buildResponse copies the data into each
// response.
type result struct {
	data    []byte
	id      string // ARN, or parameter name
	version string
}

// optionalKeys returns the reads of objs whose every object is optional:
// only those may be missing from the store. A read that a required object
// shares stays required.
func optionalKeys(objs []object, failover bool) map[fetchKey]bool {
	opt := make(map[fetchKey]bool, len(objs))
	for i := range objs {
		k := keyOf(&objs[i], failover)
		if o, seen := opt[k]; !seen || o {
			opt[k] = objs[i].Optional
		}
	}
	return opt
}

// keysOf returns the distinct reads objs need, in objects order, and the
// first object needing each (for messages).
func keysOf(objs []object, failover bool) ([]fetchKey, map[fetchKey]*object) {
	keys := make([]fetchKey, 0, len(objs))
	owners := make(map[fetchKey]*object, len(objs))
	for i := range objs {
		k := keyOf(&objs[i], failover)
		if _, dup := owners[k]; dup {
			continue
		}
		owners[k] = &objs[i]
		keys = append(keys, k)
	}
	return keys, owners
}

// plan groups reads into store calls.
type plan struct {
	// smBatches are BatchGetSecretValue calls of up to 20 current secrets.
	smBatches [][]fetchKey
	// smCurrent are current secrets read with one GetSecretValue call
	// each, which fall back to BatchGetSecretValue when throttled.
	smCurrent []fetchKey
	// smSingles are GetSecretValue reads without a fallback: pinned
	// versions and labels, which BatchGetSecretValue cannot read (and,
	// with ReadBatch, a lone current secret).
	smSingles []fetchKey
	// ssm are GetParameters calls of up to 10 parameters.
	ssm [][]fetchKey
}

func makePlan(keys []fetchKey, strategy ReadStrategy, q Quotas) *plan {
	pl := &plan{}
	var current, params []fetchKey
	for _, k := range keys {
		switch {
		case k.typ == typeSSMParameter:
			params = append(params, k)
		case k.batchable():
			current = append(current, k)
		default:
			pl.smSingles = append(pl.smSingles, k)
		}
	}
	// Weighed chunk by chunk: a remainder of 3 secrets is 3 calls against
	// one batch call of its own.
	for _, c := range chunk(current, smBatchSize) {
		switch {
		case strategy == ReadBatch && len(c) == 1:
			pl.smSingles = append(pl.smSingles, c...)
		case strategy == ReadBatch || q.batchCheaper(len(c)):
			pl.smBatches = append(pl.smBatches, c)
		default:
			pl.smCurrent = append(pl.smCurrent, c...)
		}
	}
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
	id       credKey // the identity's key: reads are shared only under it
	creds    aws.Credentials
	failover bool
	// probe: every read's error is the read's alone and fails nothing
	// else (a dry run, which reports each object).
	probe bool

	owners   map[fetchKey]*object
	optional map[fetchKey]bool  // reads that may be missing (optionalKeys)
	reads    map[fetchKey]*read // every key of the Fetch; not modified after run starts
	mine     map[fetchKey]bool  // the keys this Fetch reads itself
	share    *shareTable        // nil: nothing is shared

	ctx    context.Context // of the store calls
	cancel context.CancelFunc
	sem    chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	err    error         // the first error of this Fetch's own reads
	failed chan struct{} // closed when err is set
}

// outcome is what run got for the reads of a Fetch.
type outcome struct {
	// values are the values of the reads, fetched or held.
	values map[fetchKey]*result
	// missing are the reads that failed without failing the Fetch, with
	// their errors: optional ones the store does not have (in a probe,
	// every failed read). A missing read with a value in values is one a
	// rotation check keeps from the volume (see keepMissing).
	missing map[fetchKey]error
}

// run fetches every object. Without sharing, the first error cancels the
// other calls; with sharing, the reads this Fetch owns run on for the
// Fetches waiting for them (see share.go).
func (f *fetcher) run(ctx context.Context, objs []object, held *provider.Held) (*outcome, error) {
	all, owners := keysOf(objs, f.failover)
	f.owners, f.optional, f.share = owners, optionalKeys(objs, f.failover), f.p.share
	var reuse map[fetchKey]*result
	if held != nil {
		var err error
		if reuse, err = f.checkHeld(ctx, objs, held); err != nil {
			return nil, err
		}
	}
	keys := make([]fetchKey, 0, len(all))
	for _, k := range all {
		if reuse[k] == nil {
			keys = append(keys, k)
		}
	}
	f.failed = make(chan struct{})
	f.sem = make(chan struct{}, f.p.maxConcurrency)
	var owned []fetchKey
	if f.share != nil {
		f.reads, owned = f.share.acquire(f.id, keys)
		f.ctx, f.cancel = context.WithoutCancel(ctx), func() {}
	} else {
		f.reads = make(map[fetchKey]*read, len(keys))
		for _, k := range keys {
			f.reads[k] = newRead()
		}
		owned = keys
		f.ctx, f.cancel = context.WithCancel(ctx)
	}
	f.mine = make(map[fetchKey]bool, len(owned))
	for _, k := range owned {
		f.mine[k] = true
	}
	f.start(owned)
	out, err := f.wait(ctx, keys)
	if f.share == nil {
		// Nobody else needs the calls still running.
		f.cancel()
		f.wg.Wait()
	}
	if err != nil {
		return nil, err
	}
	for k, r := range out.values {
		// Every version read answers later checks of this identity.
		if k.Version == "" {
			f.p.versions.put(shareKey{id: f.id, k: k}, r.id, r.version)
		}
	}
	for k, r := range reuse {
		out.values[k] = r
	}
	f.keepMissing(out, held)
	return out, nil
}

// keepMissing gives the missing reads that a checked volume holds their
// held values: an optional object that is gone from the store stays in a
// running pod's volume, as every file does when a check fails, rather than
// vanishing under an app that read it. Pods that mount later go without it.
func (f *fetcher) keepMissing(out *outcome, held *provider.Held) {
	if held == nil || len(out.missing) == 0 {
		return
	}
	byPath := heldByPath(held)
	for k := range out.missing {
		if h, ok := byPath[f.owners[k].Path]; ok && h.Source == sourceOf(k, f.region) {
			if r := readHeld(held, f.owners[k].Path, h); r != nil {
				out.values[k] = r
			}
		}
	}
}

// skips reports whether err, the error of the read of k, leaves k out of
// the volume instead of failing the Fetch: k's objects are optional and
// the store does not have it (which only an error about k alone, keyOnly,
// can say). Denials, throttling and every other error still fail. A probe
// skips every error.
func (f *fetcher) skips(k fetchKey, err error, keyOnly bool) bool {
	return f.probe || keyOnly && f.optional[k] && errors.Is(err, provider.ErrNotFound)
}

// start submits the store calls of keys, batched by the plan.
func (f *fetcher) start(keys []fetchKey) {
	if len(keys) == 0 {
		return
	}
	pl := makePlan(keys, f.p.strategy, f.p.quotas)
	for _, b := range pl.smBatches {
		f.submit(b, func(ctx context.Context) { f.smBatch(ctx, b, nil) }, nil)
	}
	f.smCurrent(pl.smCurrent)
	for _, k := range pl.smSingles {
		f.submit([]fetchKey{k}, func(ctx context.Context) { f.smSingle(ctx, k, nil) }, nil)
	}
	for _, b := range pl.ssm {
		f.submit(b, func(ctx context.Context) { f.ssmBatch(ctx, b) }, nil)
	}
	go func() {
		f.wg.Wait()
		for _, k := range keys { // every call ended, so a key left is a bug
			f.failKey(k, noValue)
		}
	}()
}

// wait collects the result of every key. It returns at the first error of
// this Fetch's own reads, at the error of a read it waits for, or when ctx
// ends: a waiter never waits longer than its own context. An optional read
// the store does not have is missing, not an error (see skips).
func (f *fetcher) wait(ctx context.Context, keys []fetchKey) (*outcome, error) {
	out := &outcome{values: make(map[fetchKey]*result, len(keys))}
	for _, k := range keys {
		r := f.reads[k]
		select {
		case <-r.done:
		case <-f.failed:
			f.mu.Lock()
			defer f.mu.Unlock()
			return nil, f.err
		case <-ctx.Done():
			return nil, &kindError{kind: provider.ErrUnavailable, msg: fmt.Sprintf("%s in region %s: fetch canceled: %v", f.what(k), f.region, ctx.Err()), cause: ctx.Err()}
		}
		err := r.err
		if r.errFor != nil {
			err = r.errFor(f.what(k))
		}
		switch {
		case err == nil:
			out.values[k] = r.res
		case f.skips(k, err, r.errFor != nil):
			if out.missing == nil {
				out.missing = map[fetchKey]error{}
			}
			out.missing[k] = err
		default:
			return nil, err
		}
	}
	return out, nil
}

// submit runs job, which reads keys ks, when a concurrency slot is free. A
// job finishes each of its keys or hands it to another job; a job that
// cannot start because the Fetch ended fails them. after, if set, runs
// when the job ended or was skipped. Jobs may submit more jobs.
func (f *fetcher) submit(ks []fetchKey, job func(context.Context), after func()) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if after != nil {
			defer after() // after the slot is released: it may submit
		}
		select {
		case f.sem <- struct{}{}:
		case <-f.ctx.Done():
			f.failKeys(ks, canceled(f.ctx.Err()))
			return
		}
		defer func() { <-f.sem }()
		if err := f.ctx.Err(); err != nil {
			f.failKeys(ks, canceled(err))
			return
		}
		ctx, cancel := context.WithTimeout(f.ctx, f.p.callTimeout)
		defer cancel()
		job(ctx)
	}()
}

// noValue is the error of the read of what when every call ended without
// finishing it: a bug (errInternal), not the store's trouble.
func noValue(what string) error {
	return &kindError{kind: errInternal, msg: what + ": no value was fetched"}
}

func canceled(err error) error {
	return &kindError{kind: provider.ErrUnavailable, msg: "fetch canceled: " + err.Error(), cause: err}
}

// fail records the first error of this Fetch's own reads and, without
// sharing, cancels the remaining calls.
func (f *fetcher) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
		close(f.failed)
		f.cancel()
	}
}

// ok records the value read for k.
func (f *fetcher) ok(k fetchKey, r *result) { f.finish(k, r, nil, nil) }

// failKey records the failure of the read of k alone; errFor renders the
// error for a Fetch's name of the object (see read.errFor).
func (f *fetcher) failKey(k fetchKey, errFor func(what string) error) { f.finish(k, nil, nil, errFor) }

// failKeys records the failure of a call that read ks: err names the call.
func (f *fetcher) failKeys(ks []fetchKey, err error) {
	for _, k := range ks {
		f.finish(k, nil, err, nil)
	}
}

// finish records the outcome of the read of k, if this Fetch owns it and
// it has none yet, and publishes it to the Fetches waiting for it.
func (f *fetcher) finish(k fetchKey, res *result, err error, errFor func(string) error) {
	r := f.reads[k]
	if !f.mine[k] {
		return
	}
	var first bool
	if f.share != nil {
		first = f.share.finish(f.id, k, r, res, err, errFor)
	} else {
		first = r.finish(res, err, errFor, nil, nil)
	}
	if !first || (err == nil && errFor == nil) {
		return
	}
	if errFor != nil {
		err = errFor(f.what(k))
	}
	if f.skips(k, err, errFor != nil) {
		return
	}
	f.fail(err)
}

// keyErr renders the store's error cause of the read of one key.
func (f *fetcher) keyErr(cause error) func(string) error {
	return func(what string) error { return storeError(cause, what, f.region, f.who) }
}

// thenErr renders a read that failed with err and whose fallback call op
// failed too with then. Its kind is err's: a throttled read stays
// Unavailable (retryable, eligible for the failover region) even when the
// role may not call the fallback API.
func (f *fetcher) thenErr(err error, op string, then error) func(string) error {
	return func(what string) error { return storeErrorThen(err, what, f.region, f.who, op, then) }
}

// what names the object(s) read with k, for messages.
func (f *fetcher) what(k fetchKey) string {
	s := k.describe()
	if o := f.owners[k]; o != nil {
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

// smCurrent reads current secrets with one GetSecretValue call each, all in
// parallel. The reads still throttled after the SDK's retries are read
// again with BatchGetSecretValue, in chunks of 20, once every call of the
// group has ended: the batch quota is a bucket of its own, so it has
// headroom when GetSecretValue's is spent, and waiting for the group makes
// one batch of the throttled reads instead of one batch each (the group's
// calls are parallel, so this costs one more round trip, not more).
func (f *fetcher) smCurrent(ks []fetchKey) {
	if len(ks) == 0 {
		return
	}
	var mu sync.Mutex
	left := len(ks)
	throttled := map[fetchKey]error{}
	for _, k := range ks {
		f.submit([]fetchKey{k}, func(ctx context.Context) {
			res, err := f.getSecretValue(ctx, k)
			switch {
			case err == nil:
				f.ok(k, res)
			case isThrottle(err):
				mu.Lock()
				throttled[k] = err
				mu.Unlock()
			default:
				f.failKey(k, f.keyErr(err))
			}
		}, func() {
			mu.Lock()
			defer mu.Unlock()
			if left--; left > 0 || len(throttled) == 0 {
				return
			}
			again := make([]fetchKey, 0, len(throttled))
			for _, k := range ks {
				if throttled[k] != nil {
					again = append(again, k)
				}
			}
			f.p.log.Debug("aws: GetSecretValue throttled; reading with BatchGetSecretValue", logkey.Region, f.region, logkey.Identity, f.who, logkey.ObjectCount, len(again))
			for _, b := range chunk(again, smBatchSize) {
				f.submit(b, func(ctx context.Context) { f.smBatch(ctx, b, throttled) }, nil)
			}
		})
	}
}

// smBatch reads up to 20 current secrets with BatchGetSecretValue.
// Secrets the response does not account for are read one by one; so are
// all of them if the role may not call BatchGetSecretValue (policies
// written for the incumbent provider allow only GetSecretValue) or, with
// ReadByQuota, if the call is throttled after the SDK's retries (the other
// API has a quota of its own). prior, for a batch that is itself the
// fallback of throttled GetSecretValue calls, holds each key's error: such
// a batch falls back no further.
func (f *fetcher) smBatch(ctx context.Context, ks []fetchKey, prior map[fetchKey]error) {
	pending := make(map[string]fetchKey, len(ks))
	ids := make([]string, 0, len(ks))
	for _, k := range ks {
		pending[k.Name] = k
		ids = append(ids, k.Name)
	}
	var throttled error // the batch's, when its secrets are read one by one because of it
	var token *string
pages:
	for page := 0; page < maxBatchPage && len(pending) > 0; page++ {
		out, err := f.p.sm.BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{SecretIdList: ids, NextToken: token}, f.smOptions)
		if err != nil {
			kind, _, _ := describeErr(err)
			left := pendingOf(ks, pending)
			switch {
			case prior != nil:
				// The fallback failed too: each read fails with its
				// own GetSecretValue error, noting this one.
				for _, k := range left {
					f.failKey(k, f.thenErr(prior[k], "BatchGetSecretValue", err))
				}
				return
			case page == 0 && kind == provider.ErrPermissionDenied:
				f.p.log.Debug("aws: BatchGetSecretValue denied; reading secrets one by one", logkey.Region, f.region, logkey.Identity, f.who, logkey.ObjectCount, len(ks))
				break pages
			case page == 0 && f.p.strategy == ReadByQuota && isThrottle(err):
				f.p.log.Debug("aws: BatchGetSecretValue throttled; reading with GetSecretValue", logkey.Region, f.region, logkey.Identity, f.who, logkey.ObjectCount, len(ks))
				throttled = err
				break pages
			}
			f.failKeys(left, storeError(err, f.whatBatch("secretsmanager BatchGetSecretValue", left), f.region, f.who))
			return
		}
		for _, e := range out.Errors {
			k, ok := pending[aws.ToString(e.SecretId)]
			if !ok {
				continue
			}
			delete(pending, k.Name)
			f.failKey(k, f.keyErr(&apiError{code: aws.ToString(e.ErrorCode), message: aws.ToString(e.Message)}))
		}
		for _, v := range out.SecretValues {
			for _, id := range []string{aws.ToString(v.Name), aws.ToString(v.ARN)} {
				k, ok := pending[id]
				if !ok || id == "" {
					continue
				}
				delete(pending, id)
				f.ok(k, smResult(v.SecretString, v.SecretBinary, v.ARN, v.Name, v.VersionId))
				break
			}
		}
		if out.NextToken == nil || *out.NextToken == "" {
			break
		}
		token = out.NextToken
	}
	// Whatever is left: read one by one (an id the batch answer names
	// differently, e.g. a partial ARN, or all of them after a denial or a
	// throttle).
	for _, k := range pendingOf(ks, pending) {
		f.submit([]fetchKey{k}, func(ctx context.Context) { f.smSingle(ctx, k, throttled) }, nil)
	}
}

// pendingOf returns the keys of ks still in pending, in ks order.
func pendingOf(ks []fetchKey, pending map[string]fetchKey) []fetchKey {
	out := make([]fetchKey, 0, len(pending))
	for _, k := range ks {
		if _, ok := pending[k.Name]; ok {
			out = append(out, k)
		}
	}
	return out
}

// smSingle reads one secret version with GetSecretValue. after, if set, is
// the throttling error of the BatchGetSecretValue call this read replaces;
// the read falls back no further.
func (f *fetcher) smSingle(ctx context.Context, k fetchKey, after error) {
	res, err := f.getSecretValue(ctx, k)
	if err == nil {
		f.ok(k, res)
		return
	}
	if kind, _, _ := describeErr(err); after != nil && kind == provider.ErrUnavailable {
		f.failKey(k, f.thenErr(after, "GetSecretValue", err))
		return
	}
	f.failKey(k, f.keyErr(err))
}

func (f *fetcher) getSecretValue(ctx context.Context, k fetchKey) (*result, error) {
	in := &secretsmanager.GetSecretValueInput{SecretId: aws.String(k.Name)}
	if k.Version != "" {
		in.VersionId = aws.String(k.Version)
	}
	if k.Label != "" {
		in.VersionStage = aws.String(k.Label)
	}
	out, err := f.p.sm.GetSecretValue(ctx, in, f.smOptions)
	if err != nil {
		return nil, err
	}
	return smResult(out.SecretString, out.SecretBinary, out.ARN, out.Name, out.VersionId), nil
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
func (f *fetcher) ssmBatch(ctx context.Context, ks []fetchKey) {
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
			f.failKey(ks[0], f.keyErr(err))
			return
		}
		f.failKeys(ks, storeError(err, f.whatBatch("ssm GetParameters", ks), f.region, f.who))
		return
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
			f.ok(k, &result{data: []byte(aws.ToString(prm.Value)), id: id, version: strconv.FormatInt(prm.Version, 10)})
			break
		}
	}
	if len(out.InvalidParameters) > 0 {
		invalid := append([]string(nil), out.InvalidParameters...)
		sort.Strings(invalid)
		// The first names the others too (this Fetch reports only one
		// error); a Fetch waiting for one of the others gets its own.
		msg := "parameter not found (or no such version or label)"
		first := msg
		if len(invalid) > 1 {
			first += fmt.Sprintf("; also not found: %s", strings.Join(quoteAll(invalid[1:]), ", "))
		}
		k, ok := bySel[invalid[0]]
		if !ok {
			// Not a name we asked for: fail the call.
			k = fetchKey{typ: typeSSMParameter, ref: ref{Name: invalid[0]}}
			f.failKeys(pendingSel(ks, bySel), storeError(&apiError{code: "InvalidParameters", message: first}, f.what(k), f.region, f.who))
			return
		}
		delete(bySel, invalid[0])
		f.failKey(k, f.keyErr(&apiError{code: "InvalidParameters", message: first}))
		for _, s := range invalid[1:] {
			if k, ok := bySel[s]; ok {
				delete(bySel, s)
				f.failKey(k, f.keyErr(&apiError{code: "InvalidParameters", message: msg}))
			}
		}
	}
	if len(bySel) > 0 {
		missing := make([]string, 0, len(bySel))
		for s := range bySel {
			missing = append(missing, s)
		}
		sort.Strings(missing)
		f.failKeys(pendingSel(ks, bySel), &kindError{kind: provider.ErrUnavailable, msg: fmt.Sprintf("%s in region %s as %s: the response has no value for %s",
			f.whatBatch("ssm GetParameters", ks), f.region, f.who, strings.Join(quoteAll(missing), ", "))})
	}
}

// pendingSel returns the keys of ks whose selectors are still in bySel.
func pendingSel(ks []fetchKey, bySel map[string]fetchKey) []fetchKey {
	out := make([]fetchKey, 0, len(bySel))
	for _, k := range ks {
		if _, ok := bySel[k.ssmSelector()]; ok {
			out = append(out, k)
		}
	}
	return out
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// buildResponse turns fetched values into the volume's files, in objects
// order, each object followed by its jmesPath files. An optional object
// the store does not have is left out with its jmesPath files, and a
// Warning for class ("namespace/name") says so; one a check keeps is in,
// with a Warning too.
func buildResponse(objs []object, out *outcome, region string, failover bool, class string) (*provider.Response, error) {
	resp := &provider.Response{}
	for i := range objs {
		o := &objs[i]
		k := keyOf(o, failover)
		r, ok := out.values[k]
		if missing, gone := out.missing[k]; gone {
			resp.Warnings = append(resp.Warnings, missingWarning(class, o, r, missing))
		}
		if !ok {
			if _, gone := out.missing[k]; gone {
				continue
			}
			return nil, noValue(o.describe()) // cannot happen: run returns every key
		}
		files, err := objectFiles(o, r)
		if err != nil {
			return nil, err
		}
		resp.Files = append(resp.Files, files...)
		// One entry per object, with the file its value is in: a check
		// reads the value back from there (see check.go).
		resp.Versions = append(resp.Versions, provider.ObjectVersion{ID: r.id, Version: r.version, Path: o.Path, Source: sourceOf(k, region)})
	}
	resp.Warnings = boundWarnings(resp.Warnings, class)
	return resp, nil
}

// objectFiles are the files of object o with value r: its own file, then
// one per jmesPath entry.
func objectFiles(o *object, r *result) ([]provider.File, error) {
	files := []provider.File{{Path: o.Path, Mode: o.Mode, Data: bytes.Clone(r.data)}}
	if len(o.JMES) == 0 {
		return files, nil
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
		files = append(files, provider.File{Path: e.Path, Mode: e.Mode, Data: []byte(s)})
	}
	return files, nil
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

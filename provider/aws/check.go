package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/podsecrets/podsecrets/provider"
)

// Rotation checks.
//
// A check (a Fetch with Request.Held) must cost as little as the store
// allows and nothing for what did not change:
//
//   - A pinned object (objectVersion, or an SSM name:version) never changes:
//     its held value is reused without a call.
//   - A Secrets Manager object read by label (AWSCURRENT by default) is
//     checked with DescribeSecret, whose VersionIdsToStages names the version
//     the label is on: 40,000 calls/s per account and region against 10,000
//     for GetSecretValue and 100 for BatchGetSecretValue, and it carries no
//     value. Only a changed secret is read again. An identity that may not
//     DescribeSecret (IAM policies written for reads only) is read with
//     GetSecretValue instead and compared by version.
//   - An SSM parameter's check is its read: GetParameters returns values and
//     versions of 10 names in one call, and there is no cheaper question.
//
// Every version learned (by a check or a read) is remembered per identity
// and object, without the value, and answers the checks of other volumes of
// the same identity for up to Held.MaxAge (the class's poll interval): the
// 100 pods of one Deployment on a node cost one check per object and
// interval, as one pod does. A remembered version never crosses identities,
// as reads and credentials never do.

// maxVersionAge bounds how long a learned version is kept: a class polling
// less often than this checks each volume on its own.
const maxVersionAge = time.Hour

// maxVersions bounds the versions remembered; past it, the older half is
// dropped, which costs only a few more checks.
const maxVersions = 16384

// learned is a version as a check or a read saw it.
type learned struct {
	id, version string
	at          time.Time
}

// versionTable remembers the versions learned per identity and object.
type versionTable struct {
	now func() time.Time

	mu sync.Mutex
	m  map[shareKey]learned

	flight singleflight.Group // concurrent DescribeSecret calls of one key
}

func newVersionTable(now func() time.Time) *versionTable {
	return &versionTable{now: now, m: map[shareKey]learned{}}
}

func (t *versionTable) put(sk shareKey, id, version string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if len(t.m) >= maxVersions {
		for k, v := range t.m {
			if now.Sub(v.at) > maxVersionAge/2 || len(t.m) >= maxVersions {
				delete(t.m, k)
			}
		}
	}
	t.m[sk] = learned{id: id, version: version, at: now}
}

// get returns the version of sk learned less than maxAge ago.
func (t *versionTable) get(sk shareKey, maxAge time.Duration) (learned, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.m[sk]
	if !ok || t.now().Sub(v.at) >= min(maxAge, maxVersionAge) {
		return learned{}, false
	}
	return v, true
}

// sourceOf describes the read of k in region, for provider.ObjectVersion.
// Source: a held value is reused only for the same read.
func sourceOf(k fetchKey, region string) string {
	return fmt.Sprintf("%s|%s|%s|%s|%s", k.typ, region, k.Name, k.Version, k.Label)
}

// checkHeld decides, for each key of objs that the volume holds, whether its
// held value is still current, and returns those values: the keys the
// Fetch need not read. A key it returns no value for is read as in any
// Fetch, and its version compared by the driver.
func (f *fetcher) checkHeld(ctx context.Context, objs []object, held *provider.Held) (map[fetchKey]*result, error) {
	byPath := heldByPath(held)
	keys, owners := keysOf(objs, f.failover)
	reuse := make(map[fetchKey]*result, len(keys))
	var mu sync.Mutex
	keep := func(k fetchKey, h provider.ObjectVersion) {
		r := readHeld(held, owners[k].Path, h)
		if r == nil {
			return // read it again
		}
		mu.Lock()
		reuse[k] = r
		mu.Unlock()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.p.maxConcurrency)
	for _, k := range keys {
		h, ok := byPath[owners[k].Path]
		switch {
		case !ok || h.Source != sourceOf(k, f.region):
			continue // new to the volume, or a different read now
		case k.Version != "":
			keep(k, h) // pinned
			continue
		}
		sk := shareKey{id: f.id, k: k}
		if v, ok := f.p.versions.get(sk, held.MaxAge); ok {
			if v.id == h.ID && v.version == h.Version {
				keep(k, h)
			}
			continue
		}
		if k.typ != typeSecretsManager {
			continue // SSM: the read is the check
		}
		g.Go(func() error {
			v, err := f.describe(gctx, k)
			switch {
			case errors.Is(err, errNoStage), errors.Is(err, provider.ErrPermissionDenied),
				f.optional[k] && errors.Is(err, provider.ErrNotFound):
				return nil // read it: the read answers or fails clearly (or, optional, is missing)
			case err != nil:
				return err
			}
			if v.id == h.ID && v.version == h.Version {
				keep(k, h)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return reuse, nil
}

// heldByPath indexes the versions a volume holds by their file.
func heldByPath(held *provider.Held) map[string]provider.ObjectVersion {
	byPath := make(map[string]provider.ObjectVersion, len(held.Objects))
	for _, o := range held.Objects {
		byPath[o.Path] = o
	}
	return byPath
}

// readHeld reads back the value of h, the held version whose file is path;
// nil when the volume cannot give it (then it is read from the store).
func readHeld(held *provider.Held, path string, h provider.ObjectVersion) *result {
	data, err := held.ReadFile(path)
	if err != nil {
		return nil
	}
	return &result{data: data, id: h.ID, version: h.Version}
}

// errNoStage: DescribeSecret shows no version with the label a key reads.
var errNoStage = errors.New("no version has the label")

// describe learns the version k's label is on with DescribeSecret, shared
// with concurrent checks of the same identity and key.
func (f *fetcher) describe(ctx context.Context, k fetchKey) (learned, error) {
	sk := shareKey{id: f.id, k: k}
	label := k.Label
	if label == "" {
		label = labelCurrent
	}
	v, err, _ := f.p.versions.flight.Do(fmt.Sprint(sk), func() (any, error) {
		// Detached as shared reads are (see share.go): a waiter must not
		// fail because the caller that started the call gave up.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.p.callTimeout)
		defer cancel()
		out, err := f.p.sm.DescribeSecret(cctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(k.Name)}, f.smOptions)
		if err != nil {
			return nil, err
		}
		for id, stages := range out.VersionIdsToStages {
			if slices.Contains(stages, label) {
				arn := aws.ToString(out.ARN)
				if arn == "" {
					arn = aws.ToString(out.Name)
				}
				f.p.versions.put(sk, arn, id)
				return learned{id: arn, version: id}, nil
			}
		}
		return nil, errNoStage
	})
	switch {
	case errors.Is(err, errNoStage):
		return learned{}, err
	case err != nil:
		return learned{}, storeError(err, f.what(k)+": DescribeSecret", f.region, f.who)
	}
	return v.(learned), nil
}

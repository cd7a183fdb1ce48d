package aws

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/podsecrets/podsecrets/internal/logkey"
	"github.com/podsecrets/podsecrets/internal/suggest"
	"github.com/podsecrets/podsecrets/provider"
)

// What a class would mount, for `podsecrets check`: Describe from the
// parameters alone, DryRun with a store read. Both go through the parser
// and the reads a Fetch uses, so that a check says what a mount would do.

// Plan is what a class's parameters make, found without a store call.
type Plan struct {
	// Region is the class's region, or the default Describe was given;
	// "" when neither says (the driver then takes its node's region).
	Region         string
	FailoverRegion string
	// PodIdentity: read with EKS Pod Identity, else IRSA.
	PodIdentity bool
	// Audience is the audience of the service-account token the reads
	// need (AudienceSTS or AudiencePodIdentity).
	Audience string
	Objects  []PlannedObject
	// Warnings are the unknown keys of the parameters and of the objects
	// entries, as a mount reports those of the entries.
	Warnings []provider.Warning
}

// PlannedObject is one objects entry.
type PlannedObject struct {
	// Index is the entry's place in the objects list.
	Index int
	// Name is objectName; Type "secretsmanager" or "ssmparameter".
	Name, Type string
	// Version and Label select the version read ("" for the current).
	Version, Label string
	Optional       bool
	// Files are the entry's files, its own and then one per jmesPath
	// entry, without data.
	Files []PlannedFile
}

// PlannedFile is a file of the volume.
type PlannedFile struct {
	Path string
	Mode fs.FileMode
}

// knownParameters are the top-level parameter keys the provider reads.
var knownParameters = []string{paramObjects, paramRegion, paramFailoverRegion, paramPathTranslation, paramUsePodIdentity, paramAddressType}

// Describe parses params as a Fetch does and says what they would mount.
// defaultRegion stands in for the driver's default region; with neither it
// nor a region parameter, the region is left open rather than an error,
// since the driver may find one on its node. class ("namespace/name")
// names the class in messages. Errors wrap provider.ErrInvalid.
func Describe(params map[string]string, defaultRegion, class string) (*Plan, error) {
	cfg, err := parseParameters(params)
	if err != nil {
		return nil, err
	}
	if cfg.Region != "" || defaultRegion != "" {
		if err := cfg.resolveRegion(defaultRegion, class); err != nil {
			return nil, err
		}
	}
	pl := &Plan{Region: cfg.Region, FailoverRegion: cfg.FailoverRegion, PodIdentity: cfg.PodIdentity, Audience: AudienceSTS}
	if cfg.PodIdentity {
		pl.Audience = AudiencePodIdentity
	}
	for _, k := range cfg.Ignored {
		if strings.HasPrefix(k, paramObjects+"[") {
			continue // in cfg.warnings
		}
		msg := fmt.Sprintf("SecretProviderClass %s: parameters[%q]: unknown key, ignored", class, k)
		if s := suggest.Closest(k, knownParameters); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		pl.Warnings = append(pl.Warnings, provider.Warning{Reason: ReasonUnknownParameterKey, Message: msg})
	}
	pl.Warnings = append(pl.Warnings, cfg.warnings(class)...)
	for i := range cfg.Objects {
		o := &cfg.Objects[i]
		po := PlannedObject{Index: o.Index, Name: o.Name, Type: string(o.Type), Version: o.Version, Label: o.Label, Optional: o.Optional,
			Files: []PlannedFile{{Path: o.Path, Mode: o.Mode}}}
		for _, e := range o.JMES {
			po.Files = append(po.Files, PlannedFile{Path: e.Path, Mode: e.Mode})
		}
		pl.Objects = append(pl.Objects, po)
	}
	return pl, nil
}

// ReadResult is what a dry run found of one objects entry. It never holds
// a value.
type ReadResult struct {
	// Index is the entry's place in the objects list.
	Index int
	// Found: the store has the object and its files could be made.
	Found bool
	// ID and Version are the store's names of what was read (an ARN and
	// a VersionId, a parameter name and its version number).
	ID, Version string
	// Bytes are the sizes of the entry's files, in PlannedFile order.
	Bytes []int
	// Err is why the entry would fail the mount, or, for an optional
	// entry the store does not have, why it would be left out. It wraps
	// a provider error kind.
	Err error
}

// DryRun is the result of reading a class as a mount would.
type DryRun struct {
	// Region is where the objects were read.
	Region string
	// Identity names who read them: the role, or pod identity.
	Identity string
	Objects  []ReadResult
}

// DryRun reads every object of req's class with req.Pod's identity in the
// class's region, as a Fetch would, and reports each: one failing object
// does not hide the others. An error is one that fails every object:
// parameters, identity, credentials.
func (p *Provider) DryRun(ctx context.Context, req *provider.Request) (*DryRun, error) {
	cfg, err := p.parsed.get(req.Parameters, req.Class)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultFetchTimeout)
		defer cancel()
	}
	start := time.Now()
	id, err := p.resolveIdentity(ctx, &req.Pod, cfg)
	if err != nil {
		return nil, contextErr(ctx, err)
	}
	f, err := p.newFetcher(ctx, id, cfg.Region, false)
	if err != nil {
		return nil, contextErr(ctx, err)
	}
	f.probe = true
	out, err := f.run(ctx, cfg.Objects, nil)
	if err != nil {
		return nil, contextErr(ctx, err)
	}
	p.log.Debug("aws: dry run", logkey.Class, req.Class, logkey.DurationMS, ms(time.Since(start)))
	dr := &DryRun{Region: cfg.Region, Identity: id.String()}
	for i := range cfg.Objects {
		o := &cfg.Objects[i]
		k := keyOf(o, false)
		res := ReadResult{Index: o.Index}
		if r, ok := out.values[k]; ok {
			res.ID, res.Version = r.id, r.version
			files, err := objectFiles(o, r)
			if err != nil {
				res.Err = err
			} else {
				res.Found = true
				for _, fl := range files {
					res.Bytes = append(res.Bytes, len(fl.Data))
				}
			}
		} else if res.Err = out.missing[k]; res.Err == nil {
			res.Err = noValue(o.describe()) // cannot happen: run returns every key
		}
		dr.Objects = append(dr.Objects, res)
	}
	return dr, nil
}

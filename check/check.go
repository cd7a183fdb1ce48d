// Package check is `podsecrets check`: it says whether SecretProviderClasses
// in files would mount, and what, before a pod tries. Offline it parses each
// class as the driver and its provider do (the same parsers, not a copy of
// their rules) and lists the files the volume would hold; with a service
// account (--as) it reads every object from the store with that account's
// identity, as a mount would, and reports per object whether it was found,
// its version and the size of its files. It never prints a value.
package check

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podsecrets/podsecrets/internal/suggest"
	"github.com/podsecrets/podsecrets/kube"
	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/provider/aws"
	"github.com/podsecrets/podsecrets/provider/plugin"
	"github.com/podsecrets/podsecrets/rotation"
)

// Exit codes of a check, for CI.
const (
	// ExitOK: every class would mount (warnings allowed).
	ExitOK = 0
	// ExitProblems: a class is invalid, or the dry run found an object
	// (or the identity) that would fail the mount.
	ExitProblems = 1
	// ExitUsage: the command line is wrong, a file cannot be read or
	// holds no SecretProviderClass.
	ExitUsage = 2
	// ExitIncomplete: no problem found, but part of the check could not
	// be made: the cluster or the store could not be asked.
	ExitIncomplete = 3
)

// API versions of SecretProviderClass a check accepts: ours, and the
// Secrets Store CSI Driver's, whose classes migrate by their apiVersion.
const (
	APIVersion          = "podsecrets.dev/v1"
	SecretsStoreVersion = "secrets-store.csi.x-k8s.io/v1"
	classKind           = "SecretProviderClass"
)

// Keys of a class's spec the CRD defines (deploy/crd.yaml); the API server
// drops any other.
var (
	knownSpec     = []string{"provider", "parameters", "rotation", "versionPolicy"}
	knownRotation = []string{"pollInterval"}
)

// Input is one file to check.
type Input struct {
	// Name names the file in the report ("-" for standard input).
	Name string
	Data []byte
}

// Options configure a check.
type Options struct {
	// TmpfsSize is the driver's --tmpfs-size, in bytes: what a volume may
	// hold.
	TmpfsSize int64
	// Region stands in for the driver's default region (--region): the
	// region of classes without a region parameter.
	Region string
	// Namespace is where classes without one are applied (kubectl's
	// namespace); default "default".
	Namespace string
	// DryRun, when set, reads every object with a service account's
	// identity.
	DryRun *DryRunOptions
}

// DryRunOptions are what a dry-run read needs.
type DryRunOptions struct {
	// Namespace and ServiceAccount name the identity, as --as does.
	Namespace, ServiceAccount string
	// Tokens mints the account's token.
	Tokens TokenSource
	// ServiceAccounts reads the account's IRSA role annotation.
	ServiceAccounts aws.ServiceAccountGetter
	// AWS are the options of the AWS provider that reads; Region,
	// ServiceAccounts and ShareWindow are set by the check.
	AWS aws.Options
}

// TokenSource mints service-account tokens.
type TokenSource interface {
	// Token returns a token of namespace/serviceAccount for audience.
	// Errors wrap a provider error kind: ErrNotFound for an account that
	// does not exist, ErrUnavailable when the cluster cannot be asked.
	Token(ctx context.Context, namespace, serviceAccount, audience string) (provider.Token, error)
}

// Report is the outcome of a check.
type Report struct {
	Classes []Class `json:"classes"`
	// Skipped are the other documents of the files, which a check leaves
	// alone: "source: apiVersion/Kind namespace/name".
	Skipped []string `json:"skipped,omitempty"`
	// Incomplete says what could not be checked and why.
	Incomplete []string `json:"incomplete,omitempty"`
	// Usage is set when the input was unusable as a whole (no class at
	// all, a file that is not YAML).
	Usage []string `json:"usage,omitempty"`
}

// Class is the check of one SecretProviderClass.
type Class struct {
	// Source is the file and the document's number in it: "class.yaml#2".
	Source     string `json:"source"`
	APIVersion string `json:"apiVersion"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Provider   string `json:"provider,omitempty"`
	// Errors make the class fail a mount; Warnings do not.
	Errors   []string  `json:"errors,omitempty"`
	Warnings []Warning `json:"warnings,omitempty"`
	// Notes say what was not checked, or what to know.
	Notes []string `json:"notes,omitempty"`
	// Objects are the AWS provider's objects entries, with their files.
	Objects []Object `json:"objects,omitempty"`
	// DryRun is the read with --as, when one was made.
	DryRun *DryRun `json:"dryRun,omitempty"`
}

// Warning is trouble that does not fail a mount, as a pod event would say
// it.
type Warning struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// Object is one objects entry of an AWS class.
type Object struct {
	Index    int    `json:"index"`
	Name     string `json:"objectName"`
	Type     string `json:"objectType"`
	Version  string `json:"objectVersion,omitempty"`
	Label    string `json:"objectVersionLabel,omitempty"`
	Optional bool   `json:"optional,omitempty"`
	Files    []File `json:"files"`
	// Read is what the dry run found, when one was made.
	Read *Read `json:"read,omitempty"`
}

// File is a file of the volume.
type File struct {
	Path string `json:"path"`
	Mode string `json:"mode"`
	// Bytes is the file's size, from a dry run.
	Bytes *int `json:"bytes,omitempty"`
}

// Read statuses.
const (
	// ReadFound: the store has the object at ID and Version.
	ReadFound = "found"
	// ReadSkipped: an optional object the store does not have; a mount
	// leaves it out.
	ReadSkipped = "skipped"
	// ReadFailed: the object would fail the mount.
	ReadFailed = "failed"
	// ReadUnknown: the store could not be asked.
	ReadUnknown = "unknown"
)

// Read is what a dry run found of one object. It never holds a value.
type Read struct {
	Status  string `json:"status"`
	ID      string `json:"id,omitempty"`
	Version string `json:"version,omitempty"`
	Error   string `json:"error,omitempty"`
}

// DryRun is how a class was read.
type DryRun struct {
	// As is the identity: "namespace/serviceaccount".
	As string `json:"as"`
	// Identity names who read: the role, or pod identity.
	Identity string `json:"identity,omitempty"`
	Region   string `json:"region,omitempty"`
	// VolumeBytes is the tmpfs space the files take, their record
	// included, of VolumeLimit (--tmpfs-size).
	VolumeBytes int64 `json:"volumeBytes"`
	VolumeLimit int64 `json:"volumeLimit"`
}

// Code is the exit code of r (see the Exit constants).
func (r *Report) Code() int {
	problems := false
	for i := range r.Classes {
		if len(r.Classes[i].Errors) > 0 || r.Classes[i].failedReads() > 0 {
			problems = true
		}
	}
	switch {
	case problems:
		return ExitProblems
	case len(r.Usage) > 0 || len(r.Classes) == 0:
		return ExitUsage
	case len(r.Incomplete) > 0:
		return ExitIncomplete
	}
	return ExitOK
}

// Run checks every SecretProviderClass of the inputs.
func Run(ctx context.Context, inputs []Input, o Options) *Report {
	ch := &checker{o: o, r: &Report{Classes: []Class{}}}
	if ch.o.Namespace == "" {
		ch.o.Namespace = "default"
	}
	if o.DryRun != nil && (o.DryRun.Namespace == "" || o.DryRun.ServiceAccount == "") {
		ch.r.Usage = append(ch.r.Usage, "dry run: no namespace/serviceaccount")
		return ch.r
	}
	for _, in := range inputs {
		docs, err := Documents(in.Data)
		if err != nil {
			ch.r.Usage = append(ch.r.Usage, fmt.Sprintf("%s: %v", in.Name, err))
			continue
		}
		for i, d := range docs {
			ch.document(ctx, fmt.Sprintf("%s#%d", in.Name, i+1), d)
		}
	}
	if len(ch.r.Classes) == 0 && len(ch.r.Usage) == 0 {
		ch.r.Usage = append(ch.r.Usage, "no SecretProviderClass in the input")
	}
	return ch.r
}

// checker holds what one Run shares between classes.
type checker struct {
	o   Options
	r   *Report
	aws *aws.Provider // made at the first dry run
}

// document checks one document: a class, a List of them, or another
// kind, which is skipped.
func (ch *checker) document(ctx context.Context, src string, u *unstructured.Unstructured) {
	switch {
	case u.GetKind() == "List" && u.GetAPIVersion() == "v1":
		items, _, err := unstructured.NestedSlice(u.Object, "items")
		if err != nil {
			ch.r.Usage = append(ch.r.Usage, fmt.Sprintf("%s: List items: %v", src, err))
			return
		}
		for i, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				ch.r.Usage = append(ch.r.Usage, fmt.Sprintf("%s: List items[%d]: not an object", src, i))
				continue
			}
			ch.document(ctx, fmt.Sprintf("%s.items[%d]", src, i), &unstructured.Unstructured{Object: m})
		}
	case u.GetKind() == classKind:
		ch.r.Classes = append(ch.r.Classes, ch.class(ctx, src, u))
	default:
		ch.r.Skipped = append(ch.r.Skipped, fmt.Sprintf("%s: %s/%s %s", src, u.GetAPIVersion(), u.GetKind(), refOf(u.GetNamespace(), u.GetName())))
	}
}

func refOf(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// class checks one SecretProviderClass.
func (ch *checker) class(ctx context.Context, src string, u *unstructured.Unstructured) Class {
	u = u.DeepCopy()
	if u.GetNamespace() == "" {
		u.SetNamespace(ch.o.Namespace)
	}
	c := Class{Source: src, APIVersion: u.GetAPIVersion(), Namespace: u.GetNamespace(), Name: u.GetName()}
	ref := refOf(c.Namespace, c.Name)
	switch c.APIVersion {
	case APIVersion:
	case SecretsStoreVersion:
		c.Notes = append(c.Notes, fmt.Sprintf("a class of the Secrets Store CSI Driver: for podsecrets, change its apiVersion to %s", APIVersion))
	default:
		c.Errors = append(c.Errors, fmt.Sprintf("apiVersion %q: want %s (or %s, the Secrets Store CSI Driver's)", c.APIVersion, APIVersion, SecretsStoreVersion))
		return c
	}
	for _, msg := range validation.IsDNS1123Subdomain(c.Name) {
		c.Errors = append(c.Errors, fmt.Sprintf("metadata.name %q: %s", c.Name, msg))
	}
	for _, msg := range validation.IsDNS1123Label(c.Namespace) {
		c.Errors = append(c.Errors, fmt.Sprintf("metadata.namespace %q: %s", c.Namespace, msg))
	}
	c.Warnings = append(c.Warnings, unknownSpecKeys(u, ref, c.APIVersion)...)
	// The driver's own parse of the class as the API server serves it.
	kc, err := kube.ClassFrom(u)
	if err != nil {
		c.Errors = append(c.Errors, err.Error())
		return c
	}
	c.Provider = kc.Provider
	if kc.Provider != aws.Name {
		// The driver's rule for plugin names, asked of a finder that looks
		// nowhere: a bad name is ErrInvalid, a good one merely not found.
		if _, err := plugin.NewFinder(plugin.Options{Dirs: []string{os.DevNull}}).Find(kc.Provider); errors.Is(err, provider.ErrInvalid) {
			c.Errors = append(c.Errors, fmt.Sprintf("SecretProviderClass %s: spec.provider: %v", ref, err))
			return c
		}
		c.Notes = append(c.Notes, fmt.Sprintf("provider %q is not built in: a provider plugin of that name serves the class on the node, "+
			"so its parameters cannot be checked offline; the rest of the class was", kc.Provider))
		if kc.VersionPolicy == kube.PolicyRevision {
			c.Errors = append(c.Errors, "spec.versionPolicy Revision: refused for plugin classes, whose protocol cannot ask for a version (see README, \"Any store\")")
		}
		if ch.o.DryRun != nil {
			c.Notes = append(c.Notes, "no dry run: it reads through the built-in aws provider only")
		}
		return c
	}
	plan, err := aws.Describe(kc.Parameters, ch.o.Region, ref)
	if err != nil {
		c.Errors = append(c.Errors, fmt.Sprintf("SecretProviderClass %s: %v", ref, err))
		return c
	}
	for _, w := range plan.Warnings {
		c.Warnings = append(c.Warnings, Warning{Reason: w.Reason, Message: w.Message})
	}
	var files []mount.File
	for _, po := range plan.Objects {
		o := Object{Index: po.Index, Name: po.Name, Type: po.Type, Version: po.Version, Label: po.Label, Optional: po.Optional}
		for _, f := range po.Files {
			o.Files = append(o.Files, File{Path: f.Path, Mode: modeString(f.Mode)})
			files = append(files, mount.File{Path: f.Path, Mode: f.Mode})
		}
		c.Objects = append(c.Objects, o)
	}
	// The set as the driver checks it before it mounts anything.
	if err := mount.ValidateFileSet(files); err != nil {
		c.Errors = append(c.Errors, fmt.Sprintf("SecretProviderClass %s: the files: %v", ref, err))
		return c
	}
	if ch.o.DryRun == nil {
		c.Notes = append(c.Notes, "offline: the objects were not read; --as namespace/serviceaccount reads them and checks their size")
		return c
	}
	ch.dryRun(ctx, &c, kc, plan)
	return c
}

// unknownSpecKeys reports the keys of the class's spec (and of its
// rotation) that the CRD does not define: the API server drops them.
func unknownSpecKeys(u *unstructured.Unstructured, ref, apiVersion string) []Warning {
	var ws []Warning
	report := func(loc string, m map[string]any, known []string) {
		var keys []string
		for k := range m {
			if !slices.Contains(known, k) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			msg := fmt.Sprintf("SecretProviderClass %s: %s[%q]: unknown key, dropped by the API server", ref, loc, k)
			switch {
			case loc == "spec" && k == "secretObjects":
				msg = fmt.Sprintf("SecretProviderClass %s: spec.secretObjects (syncing into Kubernetes Secrets) has no equivalent in podsecrets, by design; ignored", ref)
				if apiVersion == APIVersion {
					msg += " (and dropped by the API server)"
				}
			case suggest.Closest(k, known) != "":
				msg += fmt.Sprintf("; did you mean %q?", suggest.Closest(k, known))
			}
			ws = append(ws, Warning{Reason: aws.ReasonUnknownParameterKey, Message: msg})
		}
	}
	if spec, ok := u.Object["spec"].(map[string]any); ok {
		report("spec", spec, knownSpec)
		if rot, ok := spec["rotation"].(map[string]any); ok {
			report("spec.rotation", rot, knownRotation)
		}
	}
	return ws
}

func modeString(m fs.FileMode) string { return fmt.Sprintf("%04o", uint32(m.Perm())) }

// dryRun reads the class's objects with the identity of the options.
func (ch *checker) dryRun(ctx context.Context, c *Class, kc *kube.Class, plan *aws.Plan) {
	o := ch.o.DryRun
	as := o.Namespace + "/" + o.ServiceAccount
	ref := refOf(c.Namespace, c.Name)
	if c.Namespace != o.Namespace {
		c.Errors = append(c.Errors, fmt.Sprintf("the class is in namespace %s, but a pod of %s reads classes from its own namespace", c.Namespace, as))
		return
	}
	if plan.Region == "" {
		ch.incomplete(c, "no dry run: the class has no region parameter; give --region (the driver takes its node's region label)")
		return
	}
	tok, err := o.Tokens.Token(ctx, o.Namespace, o.ServiceAccount, plan.Audience)
	if err != nil {
		ch.failed(c, fmt.Sprintf("dry run as %s: %v", as, err), err)
		return
	}
	if ch.aws == nil {
		opts := o.AWS
		opts.Region, opts.ServiceAccounts, opts.ShareWindow = ch.o.Region, o.ServiceAccounts, 0
		if ch.aws, err = aws.New(opts); err != nil {
			ch.incomplete(c, fmt.Sprintf("dry run: %v", err))
			return
		}
	}
	dr, err := ch.aws.DryRun(ctx, &provider.Request{
		Pod: provider.Pod{
			Namespace: o.Namespace, Name: "podsecrets-check", ServiceAccount: o.ServiceAccount,
			Tokens: map[string]provider.Token{plan.Audience: tok},
		},
		Parameters: kc.Parameters,
		Class:      ref,
	})
	if err != nil {
		ch.failed(c, fmt.Sprintf("dry run as %s: %v", as, err), err)
		return
	}
	c.DryRun = &DryRun{As: as, Identity: dr.Identity, Region: dr.Region, VolumeLimit: ch.o.TmpfsSize}
	var files []mount.File
	var versions []provider.ObjectVersion
	for i, res := range dr.Objects {
		obj := &c.Objects[i]
		read := &Read{Status: ReadFound, ID: res.ID, Version: res.Version}
		switch {
		case res.Found:
			versions = append(versions, provider.ObjectVersion{ID: res.ID, Version: res.Version, Path: obj.Files[0].Path})
			for j := range obj.Files {
				n := res.Bytes[j]
				obj.Files[j].Bytes = &n
				files = append(files, mount.File{Path: obj.Files[j].Path, Data: make([]byte, n)})
			}
		case obj.Optional && errors.Is(res.Err, provider.ErrNotFound):
			read = &Read{Status: ReadSkipped, Error: res.Err.Error()}
		case errors.Is(res.Err, provider.ErrUnavailable):
			read = &Read{Status: ReadUnknown, Error: res.Err.Error()}
			ch.incomplete(c, fmt.Sprintf("objects[%d]: the store could not be asked", res.Index))
		default:
			read = &Read{Status: ReadFailed, ID: res.ID, Version: res.Version, Error: res.Err.Error()}
		}
		obj.Read = read
	}
	// The record of the versions is written beside the files (as the
	// driver writes it; the sources it adds are left out of the count).
	rec := rotation.Record{Class: ref, Generation: kc.Generation, PollInterval: kc.PollInterval, Objects: versions}
	files = append(files, mount.File{Path: mount.RecordFile, Data: rec.Encode()})
	need := mount.SpaceNeeded(files)
	c.DryRun.VolumeBytes = need
	switch {
	case need > ch.o.TmpfsSize:
		c.Errors = append(c.Errors, fmt.Sprintf("the volume needs %d bytes, more than the %d each volume may hold (--tmpfs-size; the driver's flag, Helm value tmpfsSize)",
			need, ch.o.TmpfsSize))
	case kc.PollInterval > 0 && 2*need > ch.o.TmpfsSize:
		c.Warnings = append(c.Warnings, Warning{Reason: "VolumeTooFullToRotate", Message: fmt.Sprintf(
			"SecretProviderClass %s: the volume needs %d bytes, more than half of the %d it may hold: a rotation needs room for the old and the new set at once and would fail",
			ref, need, ch.o.TmpfsSize)})
	}
}

// failed records err, which kept the dry run of c from reading anything:
// a problem of the class or its identity, or, when the cluster or the
// store could not be asked, an incomplete check.
func (ch *checker) failed(c *Class, msg string, err error) {
	if errors.Is(err, provider.ErrUnavailable) {
		ch.incomplete(c, msg)
		return
	}
	c.Errors = append(c.Errors, msg)
}

func (ch *checker) incomplete(c *Class, msg string) {
	c.Notes = append(c.Notes, msg)
	ch.r.Incomplete = append(ch.r.Incomplete, fmt.Sprintf("%s: %s", c.Source, msg))
}

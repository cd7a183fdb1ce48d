// Package provider defines the contract between the CSI driver and the secret
// stores it fetches from. A provider turns one typed Request into the complete
// set of files a volume should contain; the driver owns mounting and writing.
package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strings"
	"time"
)

// Request is everything a provider may use to fetch one volume's secrets.
// It is parsed once, at the RPC boundary, by the driver.
type Request struct {
	// Pod identifies the pod the volume belongs to; its tokens are the only
	// credentials a provider may use.
	Pod Pod
	// Parameters are the SecretProviderClass spec.parameters, verbatim.
	Parameters map[string]string
	// FSGroup is the pod's fsGroup (CSI volume_mount_group), if any.
	FSGroup *int64
	// Class names the SecretProviderClass as "namespace/name", for messages.
	Class string
	// Attributes are the volume attributes kubelet sent (volume_context)
	// without the service-account tokens, which are in Pod.Tokens. A
	// provider that forwards the request (a plugin) passes them on.
	Attributes map[string]string
	// Secrets are the request's node-publish secrets, as kubelet sent them.
	Secrets Secrets
	// Target is the volume's target path, for providers that forward it.
	Target string
	// Pin, when set, are versions to mount instead of the current ones: an
	// object whose Path and Source match an entry is read at its Version
	// (a workload revision's record, see kube.VersionRecord). An object
	// with no matching entry is read as usual. A pinned version the store
	// no longer has fails the fetch with ErrNotFound.
	Pin []ObjectVersion
	// Held, when set, is what the volume holds now: the provider checks
	// the objects it lists and reuses the files of those that did not
	// change instead of fetching them again (a rotation check). Nil means
	// fetch everything.
	Held *Held
}

// Held is the content of a volume a rotation check starts from.
type Held struct {
	// Objects are the versions the volume holds, as an earlier Response
	// of this provider listed them.
	Objects []ObjectVersion
	// ReadFile returns the data of one file of the volume as it is now.
	ReadFile func(path string) ([]byte, error)
	// MaxAge is how old a version check made for another volume of the
	// same identity on this node may be and still answer for this one:
	// the class's poll interval. It is what lets 100 pods of one
	// Deployment cost one check per object and interval, not 100.
	MaxAge time.Duration
}

// Pod is the identity of the pod a volume is published for.
type Pod struct {
	Namespace      string
	Name           string
	UID            string
	ServiceAccount string
	// Tokens holds the service-account tokens kubelet minted for this pod,
	// keyed by audience.
	Tokens map[string]Token
}

// TokensKey is where kubelet puts a pod's service-account tokens in a
// volume's context (and, with serviceAccountTokenInSecrets, in its
// secrets): a JSON map of audience to {token, expirationTimestamp}. The
// driver parses it into Pod.Tokens; a plugin gets it back under the same key.
const TokensKey = "csi.storage.k8s.io/serviceAccount.tokens"

// Token is a service-account token. Its formatting methods redact the value so
// that a Token can never leak through a log line or an error message.
type Token struct {
	Value     string
	ExpiresAt time.Time
}

// String redacts the token value.
func (t Token) String() string { return "[redacted token]" }

// GoString redacts the token value, also under %#v.
func (t Token) GoString() string { return "provider.Token{[redacted]}" }

// MarshalJSON redacts the token value, e.g. when a Pod is logged as JSON.
func (Token) MarshalJSON() ([]byte, error) { return []byte(`"[redacted token]"`), nil }

// LogValue keeps the token value out of structured logs.
func (Token) LogValue() slog.Value { return slog.StringValue("[redacted token]") }

// Secrets are secret values keyed by name, such as the node-publish secrets
// of a request. Their formatting methods redact the values, as Token's do.
type Secrets map[string]string

// String redacts the values and keeps the names.
func (s Secrets) String() string { return "[redacted secrets: " + strings.Join(s.names(), ", ") + "]" }

// GoString redacts the values, also under %#v.
func (s Secrets) GoString() string { return s.String() }

// MarshalJSON redacts the values.
func (s Secrets) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// LogValue keeps the values out of structured logs.
func (s Secrets) LogValue() slog.Value { return slog.StringValue(s.String()) }

func (s Secrets) names() []string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// File is one file of a volume, relative to the volume root.
type File struct {
	Path string
	Mode fs.FileMode
	// Data is secret: it is never marshalled.
	Data []byte `json:"-"`
}

// String omits the file contents, which are secret.
func (f File) String() string { return fmt.Sprintf("%s (%v, %d bytes)", f.Path, f.Mode, len(f.Data)) }

// GoString omits the file contents, also under %#v.
func (f File) GoString() string { return "provider.File{" + f.String() + "}" }

// ObjectVersion records which version of a store object a volume holds, for
// audit logs and rotation. It never carries a value.
type ObjectVersion struct {
	// ID names the object as the store does, e.g. an ARN or parameter name.
	ID string `json:"id"`
	// Version is the store's version identifier of the fetched value.
	Version string `json:"version"`
	// Path is the file the object's value was written to; a rotation
	// check reads the value back from it (see Held).
	Path string `json:"path,omitempty"`
	// Source is the provider's own description of what it read (store,
	// region, name, selector), so that a check reuses a held value only
	// for the same read. It never carries a value.
	Source string `json:"source,omitempty"`
}

// Response is the complete content of a volume.
type Response struct {
	Files    []File
	Versions []ObjectVersion
	// Warnings report trouble that did not fail the fetch; the driver puts
	// each on the pod as a Warning event.
	Warnings []Warning
}

// Warning is trouble that does not fail a mount, such as an unknown key in a
// class's parameters. It never carries a value or a token.
type Warning struct {
	// Reason is a CamelCase event reason, e.g. "UnknownParameterKey".
	Reason string
	// Message names the class, the object and the field.
	Message string
}

// Provider fetches secrets from one kind of store.
type Provider interface {
	// Name is the value of SecretProviderClass spec.provider that selects it.
	Name() string
	// Fetch returns every file of the volume, or an error: never a partial set.
	// Errors wrap one of the Err* kinds below so that the driver can map them
	// to gRPC codes, and never contain secret values or tokens. An error
	// wraps context.DeadlineExceeded or context.Canceled only when ctx
	// ended, and then ctx's own: the driver reports the request's end ahead
	// of ErrUnavailable, so a store call that timed out on its own while
	// the request still had time must be only ErrUnavailable (retryable).
	Fetch(ctx context.Context, req *Request) (*Response, error)
}

// Pinner is implemented by providers that can read the versions a Request
// pins. A class whose provider cannot, such as a plugin whose protocol has
// no way to ask for a version, cannot use versionPolicy Revision.
type Pinner interface {
	Provider
	// CanPin reports whether Fetch honours Request.Pin.
	CanPin() bool
}

// CanPin reports whether p honours Request.Pin.
func CanPin(p Provider) bool {
	pp, ok := p.(Pinner)
	return ok && pp.CanPin()
}

// Error kinds. Providers wrap them with %w; the driver maps each to a gRPC code.
var (
	// ErrInvalid: the parameters or the store's data cannot make a volume.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound: a requested object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrPermissionDenied: the pod's identity may not read an object, or the
	// pod has no usable identity.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnavailable: the store could not be reached or kept throttling; a
	// retry may succeed.
	ErrUnavailable = errors.New("unavailable")
)

// Registry maps provider names to providers: the built-in ones, then what
// its Finder finds.
type Registry struct {
	providers map[string]Provider
	finder    Finder
}

// Finder finds providers that are not built in, such as plugins serving a
// socket of their name.
type Finder interface {
	// Find returns the provider called name, or an error wrapping an Err*
	// kind that says where it looked.
	Find(name string) (Provider, error)
}

// WithFinder makes r ask f for the names it does not hold, and returns r.
func (r *Registry) WithFinder(f Finder) *Registry {
	r.finder = f
	return r
}

// NewRegistry returns a registry holding ps. Two providers with one name is a
// programming error and panics.
func NewRegistry(ps ...Provider) *Registry {
	r := &Registry{providers: make(map[string]Provider, len(ps))}
	for _, p := range ps {
		if _, dup := r.providers[p.Name()]; dup {
			panic("provider: duplicate provider " + p.Name())
		}
		r.providers[p.Name()] = p
	}
	return r
}

// Get returns the provider called name: a built-in one, else what the
// Finder finds; without a Finder, an ErrInvalid error listing the known
// providers.
func (r *Registry) Get(name string) (Provider, error) {
	if p, ok := r.providers[name]; ok {
		return p, nil
	}
	if r.finder != nil {
		return r.finder.Find(name)
	}
	return nil, fmt.Errorf("%w: unknown provider %q (known: %s)", ErrInvalid, name, strings.Join(r.Names(), ", "))
}

// Names lists the registered provider names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.providers))
	for n := range r.providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

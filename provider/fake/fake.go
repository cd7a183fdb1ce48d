// Package fake is an in-memory provider for tests: it serves fixed files,
// can fail or block on demand, and records what it was asked.
package fake

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/podsecrets/podsecrets/provider"
)

// Provider is an in-memory provider.Provider.
type Provider struct {
	// ProviderName is what Name returns; "fake" if empty.
	ProviderName string
	// NoPin makes it a provider that cannot read a given version, as a
	// plugin is (see provider.Pinner).
	NoPin bool

	mu       sync.Mutex
	files    []provider.File
	versions []provider.ObjectVersion
	warnings []provider.Warning
	err      error
	hook     func(ctx context.Context, req *provider.Request) error
	requests []*provider.Request
	history  map[string]map[string][]byte // path → version → data
}

var _ provider.Provider = (*Provider)(nil)

// Name implements provider.Provider.
func (p *Provider) Name() string {
	if p.ProviderName == "" {
		return "fake"
	}
	return p.ProviderName
}

// CanPin implements provider.Pinner.
func (p *Provider) CanPin() bool { return !p.NoPin }

// SetFiles makes Fetch return files, each an object of its own whose
// version ("1", "2", ...) counts the changes of its data across SetFiles
// calls, as a store's versions do.
func (p *Provider) SetFiles(files ...provider.File) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := map[string]provider.ObjectVersion{}
	data := map[string]string{}
	for i, v := range p.versions {
		old[v.Path] = v
		data[v.Path] = string(p.files[i].Data)
	}
	p.files = files
	p.versions = nil
	for _, f := range files {
		v := provider.ObjectVersion{ID: f.Path, Version: "1", Path: f.Path}
		if o, ok := old[f.Path]; ok {
			v.Version = o.Version
			if data[f.Path] != string(f.Data) {
				n, _ := strconv.Atoi(o.Version)
				v.Version = strconv.Itoa(n + 1)
			}
		}
		p.versions = append(p.versions, v)
		if p.history == nil {
			p.history = map[string]map[string][]byte{}
		}
		if p.history[f.Path] == nil {
			p.history[f.Path] = map[string][]byte{}
		}
		p.history[f.Path][v.Version] = f.Data
	}
}

// Purge forgets version of the object at path, as a store deletes old
// versions: a Fetch pinned to it fails with ErrNotFound.
func (p *Provider) Purge(path, version string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.history[path], version)
}

// SetWarnings makes Fetch report warnings with its files.
func (p *Provider) SetWarnings(ws ...provider.Warning) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.warnings = ws
}

// SetError makes Fetch fail with err (nil restores success).
func (p *Provider) SetError(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

// SetHook runs hook at the start of every Fetch; an error it returns fails
// the Fetch. Tests use it to block or to observe concurrency.
func (p *Provider) SetHook(hook func(ctx context.Context, req *provider.Request) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hook = hook
}

// Requests returns the requests Fetch received, in order.
func (p *Provider) Requests() []*provider.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*provider.Request(nil), p.requests...)
}

// Fetch implements provider.Provider.
func (p *Provider) Fetch(ctx context.Context, req *provider.Request) (*provider.Response, error) {
	p.mu.Lock()
	p.requests = append(p.requests, req)
	hook, err := p.hook, p.err
	files := append([]provider.File(nil), p.files...)
	versions := append([]provider.ObjectVersion(nil), p.versions...)
	warnings := append([]provider.Warning(nil), p.warnings...)
	p.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, req); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	// Pinned objects are served at their version, as a store reads a
	// version by ID.
	for _, pin := range req.Pin {
		for i, v := range versions {
			if v.Path != pin.Path || v.Source != pin.Source || v.Version == pin.Version {
				continue
			}
			p.mu.Lock()
			data, ok := p.history[pin.Path][pin.Version]
			p.mu.Unlock()
			if !ok {
				return nil, fmt.Errorf("%w: fake object %s version %s", provider.ErrNotFound, pin.Path, pin.Version)
			}
			files[i].Data, versions[i].Version = data, pin.Version
		}
	}
	return &provider.Response{Files: files, Versions: versions, Warnings: warnings}, nil
}

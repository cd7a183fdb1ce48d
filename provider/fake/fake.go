// Package fake is an in-memory provider for tests: it serves fixed files,
// can fail or block on demand, and records what it was asked.
package fake

import (
	"context"
	"sync"

	"github.com/podsecrets/podsecrets/provider"
)

// Provider is an in-memory provider.Provider.
type Provider struct {
	// ProviderName is what Name returns; "fake" if empty.
	ProviderName string

	mu       sync.Mutex
	files    []provider.File
	versions []provider.ObjectVersion
	warnings []provider.Warning
	err      error
	hook     func(ctx context.Context, req *provider.Request) error
	requests []*provider.Request
}

var _ provider.Provider = (*Provider)(nil)

// Name implements provider.Provider.
func (p *Provider) Name() string {
	if p.ProviderName == "" {
		return "fake"
	}
	return p.ProviderName
}

// SetFiles makes Fetch return files with one version entry per file.
func (p *Provider) SetFiles(files ...provider.File) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files = files
	p.versions = nil
	for _, f := range files {
		p.versions = append(p.versions, provider.ObjectVersion{ID: f.Path, Version: "1"})
	}
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
	return &provider.Response{Files: files, Versions: versions, Warnings: warnings}, nil
}

// Package plugin is a client of the Secrets Store CSI Driver's provider
// plugins: gRPC servers on a unix socket speaking v1alpha1.CSIDriverProvider
// (Vault, Azure, GCP, Akeyless, Conjur, ...). A class whose spec.provider is
// not built in is served by the plugin whose socket has that name. The
// plugin only fetches: podsecrets writes the files it returns, whole and
// atomically, like those of any provider, so a plugin that insists on
// writing into the target itself is refused.
package plugin

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/podsecrets/podsecrets/provider"
	"github.com/podsecrets/podsecrets/provider/plugin/v1alpha1"
)

// DefaultDirs are the directories the Secrets Store CSI Driver looks for
// plugin sockets in, so that a plugin installed by its own chart is found
// without configuration.
var DefaultDirs = []string{"/var/run/secrets-store-csi-providers", "/etc/kubernetes/secrets-store-csi-providers"}

// nameRule is the rule the Secrets Store CSI Driver applies to plugin
// names; the same rule keeps a class from naming a path outside the
// directories.
var nameRule = regexp.MustCompile(`^[a-zA-Z0-9_-]{0,30}$`)

// answerOverhead is what a Mount answer may hold beyond its file contents
// (paths, modes, versions, framing).
const answerOverhead = 1 << 20

// Options configure a Finder.
type Options struct {
	// Dirs are searched in order for "<name>.sock"; DefaultDirs if empty.
	Dirs []string
	// MaxFileBytes bounds the file contents of one answer: the most a
	// volume can hold. A larger answer is refused before it is read
	// whole, so a broken plugin cannot make the driver buffer gigabytes.
	MaxFileBytes int64
}

// Finder finds plugins by name in the socket directories. It implements
// provider.Finder and keeps one connection per socket for the driver's
// life: a plugin's restart is a reconnect, not a new client.
type Finder struct {
	dirs    []string
	maxRecv int

	mu      sync.Mutex
	plugins map[string]*Plugin // by socket path
}

// NewFinder returns a Finder for o.
func NewFinder(o Options) *Finder {
	dirs := o.Dirs
	if len(dirs) == 0 {
		dirs = DefaultDirs
	}
	maxRecv := int(min(o.MaxFileBytes, 1<<30)) + answerOverhead
	if o.MaxFileBytes <= 0 {
		maxRecv = 64 << 20
	}
	return &Finder{dirs: dirs, maxRecv: maxRecv, plugins: map[string]*Plugin{}}
}

// Find implements provider.Finder: the plugin whose socket is
// "<name>.sock" in the first directory holding one.
func (f *Finder) Find(name string) (provider.Provider, error) {
	if name == "" || !nameRule.MatchString(name) {
		return nil, fmt.Errorf("%w: provider %q is neither built in nor a plugin name (letters, digits, '-' and '_', at most 30)", provider.ErrInvalid, name)
	}
	for _, dir := range f.dirs {
		path := filepath.Join(dir, name+".sock")
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Type() != fs.ModeSocket {
			continue
		}
		return f.plugin(name, path)
	}
	// Unavailable, not invalid: a plugin's DaemonSet may start after ours
	// on a new node, and kubelet's retry then finds its socket.
	return nil, fmt.Errorf("%w: provider %q is not built in and no plugin serves %s.sock in %s: install the plugin, or check the name",
		provider.ErrUnavailable, name, name, strings.Join(f.dirs, ", "))
}

func (f *Finder) plugin(name, path string) (*Plugin, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.plugins[path]; p != nil {
		return p, nil
	}
	conn, err := grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// What plugins expect of the Secrets Store CSI Driver's client.
		grpc.WithAuthority("localhost"),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(f.maxRecv)),
		// A restarted plugin is back within seconds; gRPC's default
		// backoff (up to 2 minutes) would fail mounts long after.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}))
	if err != nil {
		return nil, fmt.Errorf("%w: provider plugin %s: %v", provider.ErrUnavailable, name, err)
	}
	p := &Plugin{name: name, client: v1alpha1.NewCSIDriverProviderClient(conn), conn: conn}
	f.plugins[path] = p
	return p, nil
}

// Close closes every connection the Finder opened.
func (f *Finder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for path, p := range f.plugins {
		errs = append(errs, p.conn.Close())
		delete(f.plugins, path)
	}
	return errors.Join(errs...)
}

// Package volume is the lifecycle of a secrets volume on a node: its states,
// learned from the node each time (a killed driver remembers nothing), the
// steps that bring a target to the one state a pod may see, and the limits
// that keep many volumes from exhausting the node or the driver.
//
// A volume is in one of three states:
//
//   - Absent: nothing is mounted at the target.
//   - Incomplete: our tmpfs is mounted but writable or without "..data";
//     older drivers, which wrote on the target itself, left this when
//     killed mid-publish.
//   - Complete: our tmpfs, "..data" names a version, and the mount is
//     read-only.
//
// The read-only flag is the commit mark: a volume is written on a mount of
// its own in StagingDir, made read-only there, and only then bound onto the
// target, so the target goes from Absent to Complete in one step. Only
// Complete answers a publish with success. A fourth state, Foreign, is a
// mount that is not ours.
package volume

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/podsecrets/podsecrets/internal/failpoint"
	"github.com/podsecrets/podsecrets/mount"
)

// State is what a target holds; see the package documentation.
type State int

// The states of a target.
const (
	Absent State = iota
	Incomplete
	Complete
	Foreign
)

func (s State) String() string {
	switch s {
	case Absent:
		return "absent"
	case Incomplete:
		return "incomplete"
	case Complete:
		return "complete"
	case Foreign:
		return "foreign"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Failpoints of Publish, beside those of mount.WriteFileSet.
const (
	FailAfterMount      = "volume/after-mount"      // tmpfs mounted, nothing written
	FailAfterWritable   = "volume/after-writable"   // update: the driver's writable bind made, nothing written
	FailAfterUpdate     = "volume/after-update"     // update: written, the bind gone, the caller not yet answered
	FailBeforeReadOnly  = "volume/before-readonly"  // set written, file system still writable
	FailAfterReadOnly   = "volume/after-readonly"   // complete, the caller not yet answered
	FailBeforeUnmount   = "volume/before-unmount"   // unpublish: still mounted
	FailBeforeRemoveDir = "volume/before-removedir" // unpublish: unmounted, directory left
)

// Errors that Publish wraps. The driver maps them to gRPC codes.
var (
	// ErrTooLarge: the file set does not fit one volume or the node's limit.
	ErrTooLarge = errors.New("volume too large")
	// ErrForeign: something other than our tmpfs is mounted at the target.
	ErrForeign = errors.New("target holds a mount that is not a podsecrets volume")
)

// Inspect learns the state of target from the node's mount table and the
// volume's own content. why says what made it so, for logs.
func Inspect(m mount.Mounter, target string) (st State, why string, err error) {
	s, err := m.Status(target)
	switch {
	case err != nil:
		return 0, "", err
	case !s.Mounted:
		return Absent, "nothing mounted", nil
	case !s.Ours:
		return Foreign, "another file system is mounted there", nil
	case !s.ReadOnly:
		return Incomplete, "the file system is writable: its write did not finish", nil
	}
	info, err := os.Stat(filepath.Join(target, mount.DataDir))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Incomplete, "no " + mount.DataDir, nil
	case err != nil:
		return 0, "", fmt.Errorf("read %s: %w", mount.DataDir, mount.StripPath(err))
	case !info.IsDir():
		return Incomplete, mount.DataDir + " names no directory", nil
	}
	return Complete, "read-only with " + mount.DataDir, nil
}

// Writer writes a file set into a mounted volume. The driver's writes are
// charged to the pod's memory cgroup through memcg.Writer; InProcess writes
// from the calling process.
type Writer interface {
	WriteFileSet(ctx context.Context, podUID, dir string, files []mount.File, gid *int64) error
}

// InProcess writes file sets from the calling process, whose memory cgroup
// is charged for the pages.
type InProcess struct{}

// WriteFileSet implements Writer.
func (InProcess) WriteFileSet(_ context.Context, _, dir string, files []mount.File, gid *int64) error {
	return mount.WriteFileSet(dir, files, gid)
}

// Options configure a Manager.
type Options struct {
	// Mounter mounts; mount.System on a node.
	Mounter mount.Mounter
	// Writer writes file sets; InProcess if nil.
	Writer Writer
	// TmpfsSize caps each volume, in bytes.
	TmpfsSize int64
	// NodeLimit caps the bytes of all volumes of the node together; 0 means
	// no cap.
	NodeLimit int64
	// MaxWriters bounds the publishes writing at once; 2 if 0. A write is
	// memory traffic and, with memcg.Writer, a process whose start-up (a
	// few MiB) is charged to the driver: more than a few at once only adds
	// to the peak.
	MaxWriters int
	// PublishMemory bounds the bytes of volume data the publishes in flight
	// hold in the driver before their files are written (see Admit); 0
	// means no bound.
	PublishMemory int64
	// StagingDir holds the driver's writable binds of mounted volumes
	// while it rotates them; os.TempDir() if empty. Recover unmounts what
	// a killed driver left there.
	StagingDir string
}

// stagePrefix starts the name of every writable bind in StagingDir.
const stagePrefix = "podsecrets-stage-"

// Manager publishes and unpublishes volumes. It keeps no state a decision
// depends on: the state of a target is read from the node each time. What it
// does keep, the bytes each volume holds for NodeLimit, is rebuilt from the
// node by Recover.
type Manager struct {
	o     Options
	sem   chan struct{}
	admit *admission

	mu   sync.Mutex
	used map[string]int64 // target → bytes
}

// New returns a Manager.
func New(o Options) *Manager {
	if o.Writer == nil {
		o.Writer = InProcess{}
	}
	if o.MaxWriters <= 0 {
		o.MaxWriters = 2
	}
	if o.StagingDir == "" {
		o.StagingDir = os.TempDir()
	}
	return &Manager{o: o, sem: make(chan struct{}, o.MaxWriters), admit: newAdmission(o.PublishMemory, o.TmpfsSize), used: map[string]int64{}}
}

// Inspect is Inspect with the Manager's Mounter.
func (m *Manager) Inspect(target string) (State, string, error) { return Inspect(m.o.Mounter, target) }

// Volume is what one publish writes.
type Volume struct {
	Target string
	// PodUID names the pod whose memory cgroup pays for the pages.
	PodUID string
	// GID is the pod's fsGroup, if any.
	GID *int64
	// Class ("namespace/name") keys the estimate of the volume's size that
	// admits its publish (see PublishMemory).
	Class string
	// Fetch returns the volume's files; Publish calls it once there is
	// room in the driver's memory for them.
	Fetch func(ctx context.Context) ([]mount.File, error)
}

// Publish brings v.Target from state from (Absent or Incomplete, as Inspect
// said a moment ago under the caller's per-target lock) to Complete: wait for
// room for the volume's data, fetch it, mount a tmpfs in StagingDir, write
// the whole set there, make that mount read-only and bind it onto the
// target. On error nothing is left at the target: no pod uses a volume that
// never completed, and it holds no memory while kubelet backs off. An
// Incomplete volume (an older driver's, killed mid-publish) is unmounted and
// made anew.
//
// An Incomplete volume whose "..data" names a version is sealed instead
// (sealed is true): that version was whole before it was named, and a pod
// may be running on it, so it is kept, its links repaired and the volume
// made read-only, without a fetch. Nothing is unmounted if that fails.
func (m *Manager) Publish(ctx context.Context, from State, v Volume) (sealed bool, err error) {
	if from != Absent && from != Incomplete {
		return false, fmt.Errorf("publish from state %v", from)
	}
	if from == Incomplete {
		committed, err := mount.IsCommitted(v.Target)
		if err != nil {
			return false, err
		}
		if committed {
			return true, m.seal(v.Target)
		}
	}
	return false, m.publish(ctx, from, v)
}

func (m *Manager) publish(ctx context.Context, from State, v Volume) (err error) {
	if from == Incomplete {
		// Left by an older driver killed mid-publish: no pod has used
		// it, so it goes first (its memory with it), and the volume is
		// made anew from Absent.
		if err := m.Unpublish(v.Target); err != nil {
			return err
		}
	}
	// touched: the target holds something of ours that a failure must undo.
	touched := false
	defer func() {
		switch {
		case err == nil:
		case touched:
			m.cleanup(v.Target)
		default:
			m.release(v.Target)
			removeStray(v.Target)
		}
	}()
	// The values pass through the driver's memory before they reach the
	// pod's tmpfs: wait for room for them.
	done, err := m.admitTransit(ctx, v.Class)
	if err != nil {
		return fmt.Errorf("waiting for memory to publish: %w", err)
	}
	var files []mount.File
	defer func() { done(files) }()
	if files, err = v.Fetch(ctx); err != nil {
		return err
	}
	if err := m.reserve(v.Target, files); err != nil {
		return err
	}
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-m.sem }()
	touched = true
	// What an earlier attempt left in the target (a plugin's own writes
	// before a driver was killed) would stay on the node's disk under the
	// mount, and keep Unpublish from removing the directory.
	removeStray(v.Target)
	if err := os.Mkdir(v.Target, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create target: %w", mount.StripPath(err))
	}
	// The volume is written on a mount of its own, made read-only there,
	// and only then bound onto the target: the target goes from nothing
	// to a complete, read-only volume in one step, and kubelet's copy of
	// the mount (in the host's mount namespace) and the container's bind
	// of it copy the read-only flag (see mount.Mounter.SetReadOnly). A
	// kill at any step before the bind leaves the target empty and a
	// mount in StagingDir that Recover removes.
	stage, err := os.MkdirTemp(m.o.StagingDir, stagePrefix)
	if err != nil {
		return fmt.Errorf("create a staging directory: %w", mount.StripPath(err))
	}
	defer os.Remove(stage)
	if err := m.o.Mounter.MountTmpfs(stage, mount.TmpfsOptions{SizeBytes: m.o.TmpfsSize, GID: v.GID}); err != nil {
		return err
	}
	defer m.o.Mounter.Unmount(stage)
	if err := failpoint.Inject(FailAfterMount); err != nil {
		return err
	}
	if err := m.o.Writer.WriteFileSet(ctx, v.PodUID, stage, files, v.GID); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return fmt.Errorf("%w: %v; the volume needs %d bytes of the %d each volume may hold (raise the driver's --tmpfs-size, Helm value tmpfsSize)",
				ErrTooLarge, err, mount.SpaceNeeded(files), m.o.TmpfsSize)
		}
		return fmt.Errorf("write volume files: %w", err)
	}
	if err := failpoint.Inject(FailBeforeReadOnly); err != nil {
		return err
	}
	if err := m.o.Mounter.SetReadOnly(stage, true); err != nil {
		return err
	}
	if err := m.o.Mounter.Bind(stage, v.Target); err != nil {
		return err
	}
	return failpoint.Inject(FailAfterReadOnly)
}

// seal makes the committed set of target complete and read-only. Only an
// older driver, which wrote on the target itself and marked the file system
// read-only, leaves such a volume; a pod's bind of it then obeys the file
// system's flag alone, so that is the flag restored.
func (m *Manager) seal(target string) error {
	if err := m.o.Mounter.SetFSReadOnly(target, false); err != nil {
		return err
	}
	if err := mount.Repair(target); err != nil {
		return fmt.Errorf("repair volume: %w", err)
	}
	if err := failpoint.Inject(FailBeforeReadOnly); err != nil {
		return err
	}
	if err := m.o.Mounter.SetReadOnly(target, true); err != nil {
		return err
	}
	if err := m.o.Mounter.SetFSReadOnly(target, true); err != nil && !errors.Is(err, unix.EBUSY) {
		return err
	}
	return nil
}

// Update swaps a new file set into the Complete volume v.Target, for a
// rotation: wait for room for the data, fetch it (a nil set means nothing
// changed: nothing is written and written is false), then write it through
// a writable bind of the volume that only the driver sees. The pod's view
// stays read-only throughout, and the pod reads the old set until the one
// rename of "..data" switches it to the new one; a failure or a kill at any
// step leaves one whole set, old or new, and at most leftovers that the
// next write, or Tidy, removes.
//
// The old and the new set are on the tmpfs together for a moment, so a
// volume more than half full cannot rotate: that fails with ErrTooLarge
// and the old set stays.
func (m *Manager) Update(ctx context.Context, v Volume) (written bool, err error) {
	done, err := m.admitTransit(ctx, v.Class)
	if err != nil {
		return false, fmt.Errorf("waiting for memory to rotate: %w", err)
	}
	var files []mount.File
	defer func() { done(files) }()
	if files, err = v.Fetch(ctx); err != nil || files == nil {
		return false, err
	}
	m.mu.Lock()
	before, had := m.used[v.Target]
	m.mu.Unlock()
	if err := m.reserve(v.Target, files); err != nil {
		return false, err
	}
	defer func() {
		if err != nil && had {
			m.mu.Lock()
			m.used[v.Target] = before
			m.mu.Unlock()
		}
	}()
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-m.sem }()
	err = m.writable(v.Target, func(stage string) error {
		if err := failpoint.Inject(FailAfterWritable); err != nil {
			return err
		}
		if err := m.o.Writer.WriteFileSet(ctx, v.PodUID, stage, files, v.GID); err != nil {
			if errors.Is(err, unix.ENOSPC) {
				return fmt.Errorf("%w: %v; a rotation needs room for the old and the new set at once: %d bytes for the new one, of the %d each volume may hold (raise the driver's --tmpfs-size, Helm value tmpfsSize)",
					ErrTooLarge, err, mount.SpaceNeeded(files), m.o.TmpfsSize)
			}
			return fmt.Errorf("write volume files: %w", err)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return true, failpoint.Inject(FailAfterUpdate)
}

// Tidy finishes what a write killed inside an Update left in the Complete
// volume at target (links of the set "..data" names, other versions), if
// anything, through the driver's writable bind. It needs no store.
func (m *Manager) Tidy(target string) (repaired bool, err error) {
	tidy, err := mount.Tidy(target)
	if err != nil || tidy {
		return false, err
	}
	return true, m.writable(target, mount.Repair)
}

// writable runs write on a writable bind of the volume at target in
// StagingDir, and removes the bind. The file system of a volume of an older
// driver is read-only: it is made writable for the write, through the bind
// (a remount of the file system also resets the flags of the mount it is
// done on, and the target's must stay), and read-only again after it.
func (m *Manager) writable(target string, write func(stage string) error) error {
	st, err := m.o.Mounter.Status(target)
	if err != nil {
		return err
	}
	stage, err := os.MkdirTemp(m.o.StagingDir, stagePrefix)
	if err != nil {
		return fmt.Errorf("create a staging directory: %w", mount.StripPath(err))
	}
	defer os.Remove(stage)
	if err := m.o.Mounter.BindWritable(target, stage); err != nil {
		return err
	}
	defer m.o.Mounter.Unmount(stage)
	if st.FSReadOnly {
		if err := m.o.Mounter.SetFSReadOnly(stage, false); err != nil {
			return err
		}
		defer m.o.Mounter.SetFSReadOnly(stage, true)
	}
	return write(stage)
}

// ReadFile returns the data of the file at p (a path of the set, or
// mount.RecordFile) of the volume at target.
func (m *Manager) ReadFile(target, p string) ([]byte, error) { return mount.ReadFile(target, p) }

// cleanup undoes a failed publish: unmount, remove the directory, forget the
// bytes. Its own failures leave a state the next call reads and handles.
func (m *Manager) cleanup(target string) {
	m.Unpublish(target)
}

// Unpublish unmounts whatever is mounted at target, stacked mounts too, and
// removes the directory. A target that is gone already is not an error.
func (m *Manager) Unpublish(target string) error {
	defer m.release(target)
	// A few rounds cover mounts stacked by retries of an older driver;
	// more means something else keeps mounting there.
	for range 8 {
		s, err := m.o.Mounter.Status(target)
		if err != nil {
			return err
		}
		if !s.Mounted {
			break
		}
		if err := failpoint.Inject(FailBeforeUnmount); err != nil {
			return err
		}
		if err := m.o.Mounter.Unmount(target); err != nil {
			return err
		}
	}
	if err := failpoint.Inject(FailBeforeRemoveDir); err != nil {
		return err
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove target directory: %w", mount.StripPath(err))
	}
	return nil
}

// removeStray removes what a provider wrote into a target that podsecrets
// never mounted, and the target with it: a plugin told to write files
// itself does so before it answers with none, and its files would be on
// the node's disk, where kubelet, which removes only an empty target, would
// leave them. A target with a mount at or below it is left alone: what is
// beyond a mount point is not the provider's to lose.
func removeStray(target string) {
	var st, parent unix.Stat_t
	if unix.Lstat(target, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR ||
		unix.Stat(filepath.Dir(target), &parent) != nil || parent.Dev != st.Dev {
		return
	}
	if mounted, err := mount.AnyMountAt(target); err != nil || mounted {
		return
	}
	removeOnDevice(target, st.Dev)
}

// removeOnDevice removes dir and what it holds on device dev, best effort.
func removeOnDevice(dir string, dev uint64) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || st.Dev != dev {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			removeOnDevice(p, dev)
			continue
		}
		os.Remove(p)
	}
	os.Remove(dir)
}

// reserve checks files against the volume size and the node limit and
// records their bytes for target.
func (m *Manager) reserve(target string, files []mount.File) error {
	need := mount.SpaceNeeded(files)
	if need > m.o.TmpfsSize {
		n := 0 // files people count: the record is not one of them
		for _, f := range files {
			if f.Path != mount.RecordFile {
				n++
			}
		}
		return fmt.Errorf("%w: the volume needs %d bytes for %d files, more than the %d each volume may hold "+
			"(raise the driver's --tmpfs-size, Helm value tmpfsSize)", ErrTooLarge, need, n, m.o.TmpfsSize)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.o.NodeLimit > 0 {
		var total int64
		for t, n := range m.used {
			if t != target {
				total += n
			}
		}
		if total+need > m.o.NodeLimit {
			return fmt.Errorf("%w: the volume needs %d bytes and the node's secrets volumes hold %d of the %d all of them may hold "+
				"(raise the driver's --max-node-volume-bytes, Helm value maxNodeVolumeBytes, or spread the pods over more nodes)",
				ErrTooLarge, need, total, m.o.NodeLimit)
		}
	}
	m.used[target] = need
	return nil
}

func (m *Manager) release(target string) {
	m.mu.Lock()
	delete(m.used, target)
	m.mu.Unlock()
}

// Found is a volume Recover found on the node.
type Found struct {
	Target string
	State  State
	Why    string
	Bytes  int64
}

// Recover is the driver's start: it finds every podsecrets volume below
// podsDir, learns its state and the bytes it holds, and counts those against
// NodeLimit. Incomplete volumes stay as they are: kubelet, which never got
// success for them, retries their publish, and that completes them.
func (m *Manager) Recover(podsDir string) ([]Found, error) {
	// A driver killed inside an Update leaves its writable bind.
	stages, _ := filepath.Glob(filepath.Join(m.o.StagingDir, stagePrefix+"*"))
	for _, s := range stages {
		m.o.Mounter.Unmount(s)
		os.Remove(s)
	}
	targets, err := mount.Mounts(podsDir)
	if err != nil {
		return nil, err
	}
	found := make([]Found, 0, len(targets))
	for _, t := range targets {
		st, why, err := m.Inspect(t)
		if err != nil {
			return found, err
		}
		f := Found{Target: t, State: st, Why: why}
		var sfs unix.Statfs_t
		if err := unix.Statfs(t, &sfs); err == nil {
			f.Bytes = int64(sfs.Blocks-sfs.Bfree) * sfs.Bsize
		}
		m.mu.Lock()
		m.used[t] = f.Bytes
		m.mu.Unlock()
		found = append(found, f)
	}
	return found, nil
}

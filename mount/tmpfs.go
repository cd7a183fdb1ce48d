package mount

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Source is the device name of every tmpfs this package mounts, so that an
// operator can list them with `findmnt -S podsecrets`.
const Source = "podsecrets"

// pinnedFlags are kept on every mount and every remount: secrets are data,
// never programs or devices.
const pinnedFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// TmpfsOptions shape one volume's tmpfs.
type TmpfsOptions struct {
	// SizeBytes caps the memory the volume may use; 0 means the kernel
	// default (half of RAM), which callers should avoid.
	SizeBytes int64
	// GID, when set, becomes the group of the volume root, which is then
	// closed to others.
	GID *int64
}

// Mounter is the node's mount table as the driver needs it.
type Mounter interface {
	// MountTmpfs mounts a new tmpfs on the existing directory target.
	MountTmpfs(target string, opts TmpfsOptions) error
	// SetReadOnly flips the read-only flag of the mount at target only,
	// not of its file system. A volume is written on a mount of its own,
	// made read-only there and only then bound onto its target (Bind): the
	// bind, like every mount it propagates to (kubelet's, in the host's
	// mount namespace) and every bind made of it (the container's), copies
	// that flag, while a later change of a mount's flags reaches no other
	// mount. The file system stays writable for the driver's own binds
	// (BindWritable), so a rotation never touches the pod's view.
	SetReadOnly(target string, readOnly bool) error
	// SetFSReadOnly flips the read-only flag of the file system mounted at
	// target, which every mount of it obeys; it also resets the flags of
	// the mount at target. Only volumes of older drivers, which marked the
	// file system read-only, need it. The kernel refuses read-only with
	// EBUSY while a replaced file is still open.
	SetFSReadOnly(target string, readOnly bool) error
	// Bind mounts the mount at source at the existing directory target
	// too, with source's flags.
	Bind(source, target string) error
	// BindWritable mounts the file system mounted at target at the
	// existing directory at too, writable: the driver's private view for
	// writing into a volume whose pod's view stays read-only.
	BindWritable(target, at string) error
	// Unmount unmounts target; a target that is not a mount point is not an
	// error.
	Unmount(target string) error
	// Status reads what is mounted at target from the node's mount table;
	// a missing target has nothing mounted.
	Status(target string) (Status, error)
}

// Status is what the mount table says of one target: the facts a volume's
// state is derived from, read anew each time rather than remembered, since a
// killed driver remembers nothing.
type Status struct {
	// Mounted: target is a mount point.
	Mounted bool
	// Ours: the topmost mount at target is a tmpfs with this package's
	// Source.
	Ours bool
	// ReadOnly: that mount, or its file system, is read-only.
	ReadOnly bool
	// FSReadOnly: its file system is read-only.
	FSReadOnly bool
}

// System mounts through the kernel directly. Calling mount(2) instead of
// mount(8) keeps the image free of util-linux and the hot path free of fork
// and exec.
type System struct{}

var _ Mounter = System{}

// MountTmpfs implements Mounter.
func (System) MountTmpfs(target string, opts TmpfsOptions) error {
	data := "mode=0755"
	if opts.GID != nil {
		data = fmt.Sprintf("mode=0750,gid=%d", *opts.GID)
	}
	if opts.SizeBytes > 0 {
		data += fmt.Sprintf(",size=%d", opts.SizeBytes)
	}
	if err := unix.Mount(Source, target, "tmpfs", pinnedFlags, data); err != nil {
		return fmt.Errorf("mount the volume's tmpfs: %w", err)
	}
	return nil
}

// SetReadOnly implements Mounter. MS_BIND|MS_REMOUNT changes the mount's
// flags only. Errors leave out the path, which holds the pod's UID: kubelet
// merges repeated events only when their messages are equal.
func (System) SetReadOnly(target string, readOnly bool) error {
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | pinnedFlags)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("remount the volume read-only=%t: %w", readOnly, err)
	}
	return nil
}

// Bind implements Mounter.
func (System) Bind(source, target string) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind the volume onto its target: %w", err)
	}
	return nil
}

// SetFSReadOnly implements Mounter. A remount without MS_BIND changes the
// file system's flags; empty data keeps the tmpfs size and mode.
func (System) SetFSReadOnly(target string, readOnly bool) error {
	flags := uintptr(unix.MS_REMOUNT | pinnedFlags)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("remount the volume's file system read-only=%t: %w", readOnly, err)
	}
	return nil
}

// BindWritable implements Mounter. The bind copies target's read-only flag,
// so a second remount clears it on the new mount alone.
func (System) BindWritable(target, at string) error {
	if err := unix.Mount(target, at, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind the volume for writing: %w", err)
	}
	if err := unix.Mount("", at, "", unix.MS_REMOUNT|unix.MS_BIND|pinnedFlags, ""); err != nil {
		unix.Unmount(at, unix.MNT_DETACH)
		return fmt.Errorf("make the volume's bind writable: %w", err)
	}
	return nil
}

// Unmount implements Mounter.
func (System) Unmount(target string) error {
	err := unix.Unmount(target, 0)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount the volume: %w", err)
}

// Status implements Mounter. It reads /proc/self/mountinfo, about 0.1 ms
// with a few hundred mounts: the read-only flags and the mount's source are
// only there, and a publish needs both.
func (System) Status(target string) (Status, error) {
	// mountinfo names mount points in clean form; an unclean target would
	// look unmounted and be mounted over.
	target = filepath.Clean(target)
	if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
		return Status{}, nil
	}
	// The last entry is the topmost of mounts stacked on one point.
	var top *mountinfo.Info
	_, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		if m.Mountpoint == target {
			top = m
		}
		return true, false
	})
	if err != nil {
		return Status{}, fmt.Errorf("read mount table: %w", err)
	}
	if top == nil {
		return Status{}, nil
	}
	return Status{
		Mounted:    true,
		Ours:       top.FSType == "tmpfs" && top.Source == Source,
		ReadOnly:   hasOption(top.Options, "ro") || hasOption(top.VFSOptions, "ro"),
		FSReadOnly: hasOption(top.VFSOptions, "ro"),
	}, nil
}

// Mounts lists the mount points of this package's tmpfs volumes below dir.
func Mounts(dir string) ([]string, error) {
	prefix := filepath.Clean(dir) + "/"
	var out []string
	_, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		if m.FSType == "tmpfs" && m.Source == Source && strings.HasPrefix(m.Mountpoint, prefix) && !slices.Contains(out, m.Mountpoint) {
			out = append(out, m.Mountpoint)
		}
		return true, false
	})
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return out, nil
}

// AnyMountAt reports whether anything, of any kind, is mounted at dir or
// below it.
func AnyMountAt(dir string) (bool, error) {
	dir = filepath.Clean(dir)
	found := false
	_, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		if m.Mountpoint == dir || strings.HasPrefix(m.Mountpoint, dir+"/") {
			found = true
			return true, true
		}
		return true, false
	})
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	return found, nil
}

func hasOption(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

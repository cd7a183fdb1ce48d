package mount

import (
	"errors"
	"fmt"
	"io/fs"

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
	// SetReadOnly flips the read-only flag of the file system mounted at
	// target. It is the file system's flag, not the mount's: container
	// runtimes remount their bind of a volume read-write unless the pod asks
	// otherwise, and only a read-only file system stays read-only through
	// every bind.
	SetReadOnly(target string, readOnly bool) error
	// Unmount unmounts target; a target that is not a mount point is not an
	// error.
	Unmount(target string) error
	// IsMountPoint reports whether target is a mount point; a missing target
	// is not one.
	IsMountPoint(target string) (bool, error)
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
		return fmt.Errorf("mount tmpfs at %s: %w", target, err)
	}
	return nil
}

// SetReadOnly implements Mounter. A remount without MS_BIND changes the
// superblock; empty data keeps the tmpfs size and mode.
func (System) SetReadOnly(target string, readOnly bool) error {
	flags := uintptr(unix.MS_REMOUNT | pinnedFlags)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s read-only=%t: %w", target, readOnly, err)
	}
	return nil
}

// Unmount implements Mounter.
func (System) Unmount(target string) error {
	err := unix.Unmount(target, 0)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", target, err)
}

// IsMountPoint implements Mounter. It asks the kernel directly
// (openat2 with RESOLVE_NO_XDEV, /proc/self/mountinfo on older kernels), as
// k8s.io/mount-utils does underneath; mount-utils' constructor also probes
// umount(8) by forking it on a temporary directory, which cost a fork per
// call here and, while the child held the parent's descriptors, made
// concurrent read-only remounts fail with EBUSY.
func (System) IsMountPoint(target string) (bool, error) {
	ok, err := mountinfo.Mounted(target)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return ok, err
}

package memcg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultRoot is where the host's cgroup file system is mounted on a node.
// A driver in a container usually sees only its own cgroups there and needs
// the host's mounted elsewhere (a hostPath volume), hence Writer.Root.
const DefaultRoot = "/sys/fs/cgroup"

// DefaultParent is the cgroup kubelet puts pods below, with its default
// --cgroup-root and --cgroups-per-qos; the systemd driver's
// "kubepods.slice" form is derived from it.
const DefaultParent = "kubepods"

// maxUIDLen bounds a pod UID: Kubernetes UIDs are 36 characters, and the
// bound keeps a hostile one from bloating error messages.
const maxUIDLen = 64

// ErrNoPodCgroup means none of the places kubelet puts a pod's cgroup exists
// for the pod: the pod is gone, or Root or Parent do not match the node.
var ErrNoPodCgroup = errors.New("no memory cgroup for pod")

// ErrNoMemoryController means Root holds neither a cgroup v2 hierarchy nor a
// v1 memory hierarchy, so no pod can be charged for its volume; a caller may
// decide to write in-process instead.
var ErrNoMemoryController = errors.New("no memory cgroup controller")

// podCgroup is a pod's memory cgroup and the hierarchy version, which decides
// how a process joins it.
type podCgroup struct {
	dir string
	v2  bool
}

// PodCgroup returns the directory of the memory cgroup of the pod with UID
// podUID. root is where the host's cgroup file system is mounted
// (DefaultRoot when empty); parent is kubelet's pod parent cgroup, relative
// to the hierarchy's root (DefaultParent when empty).
//
// cgroup v2 is recognised by root/cgroup.controllers, v1 by a memory
// hierarchy at root/memory. Both of kubelet's cgroup drivers are tried:
// cgroupfs ("kubepods/burstable/pod<uid>") and systemd
// ("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice"),
// for every QoS class. A missing cgroup is an error wrapping ErrNoPodCgroup.
func PodCgroup(root, parent, podUID string) (string, error) {
	cg, err := findPodCgroup(root, parent, podUID)
	return cg.dir, err
}

func findPodCgroup(root, parent, podUID string) (podCgroup, error) {
	if root == "" {
		root = DefaultRoot
	}
	if parent == "" {
		parent = DefaultParent
	}
	if err := validateUID(podUID); err != nil {
		return podCgroup{}, err
	}
	base, v2, err := memoryHierarchy(root)
	if err != nil {
		return podCgroup{}, err
	}
	cgroupfs, systemd, err := parentDirs(parent)
	if err != nil {
		return podCgroup{}, err
	}
	for _, rel := range candidates(cgroupfs, systemd, podUID) {
		dir := filepath.Join(base, filepath.FromSlash(rel))
		fi, err := os.Lstat(dir)
		if err == nil && fi.IsDir() {
			return podCgroup{dir: dir, v2: v2}, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return podCgroup{}, fmt.Errorf("look up pod cgroup: %w", err)
		}
	}
	return podCgroup{}, fmt.Errorf("%w %s under %s or %s", ErrNoPodCgroup, podUID, cgroupfs, systemd)
}

// validateUID accepts only what a Kubernetes UID is made of, so a UID placed
// in a path can neither leave the parent cgroup nor name a file in it.
func validateUID(uid string) error {
	if uid == "" || len(uid) > maxUIDLen {
		return fmt.Errorf("invalid pod UID: want 1 to %d hex digits and dashes", maxUIDLen)
	}
	for i := 0; i < len(uid); i++ {
		c := uid[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == '-') {
			return fmt.Errorf("invalid pod UID: want 1 to %d hex digits and dashes", maxUIDLen)
		}
	}
	return nil
}

// memoryHierarchy returns the directory of the hierarchy that holds the
// memory controller below root. root/cgroup.controllers exists only where
// root is a v2 mount; a v1 or hybrid host's root is a tmpfs of v1 mounts,
// memory among them (a hybrid host's v2 mount, root/unified, carries no
// controllers).
func memoryHierarchy(root string) (dir string, v2 bool, err error) {
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return root, true, nil
	}
	mem := filepath.Join(root, "memory")
	if _, err := os.Stat(filepath.Join(mem, "cgroup.procs")); err == nil {
		return mem, false, nil
	}
	return "", false, fmt.Errorf("%w under %s", ErrNoMemoryController, root)
}

// parentDirs returns where the cgroupfs driver and the systemd driver put
// parent: "a/b" as is, and as the slices "a.slice/a-b.slice". A parent
// already in slice form ("kubepods.slice") is taken as the systemd one.
func parentDirs(parent string) (cgroupfs, systemd string, err error) {
	parent = strings.Trim(parent, "/")
	elems := strings.Split(parent, "/")
	for _, e := range elems {
		if e == "" || e == "." || e == ".." {
			return "", "", fmt.Errorf("invalid parent cgroup %q", parent)
		}
	}
	if strings.HasSuffix(elems[len(elems)-1], ".slice") {
		return parent, parent, nil
	}
	dirs := make([]string, len(elems))
	prefix := ""
	for i, e := range elems {
		// systemd reserves "-" as the slice separator; kubelet escapes it
		// the same way.
		e = strings.ReplaceAll(e, "-", "_")
		if prefix != "" {
			e = prefix + "-" + e
		}
		prefix = e
		dirs[i] = e + ".slice"
	}
	return parent, strings.Join(dirs, "/"), nil
}

// candidates lists the places of a pod's cgroup, slash-separated and relative
// to the hierarchy's root, Guaranteed, Burstable then BestEffort for each
// driver.
func candidates(cgroupfs, systemd, uid string) []string {
	s := strings.Split(systemd, "/")
	prefix := strings.TrimSuffix(s[len(s)-1], ".slice")
	suid := strings.ReplaceAll(uid, "-", "_")
	return []string{
		cgroupfs + "/pod" + uid,
		cgroupfs + "/burstable/pod" + uid,
		cgroupfs + "/besteffort/pod" + uid,
		systemd + "/" + prefix + "-pod" + suid + ".slice",
		systemd + "/" + prefix + "-burstable.slice/" + prefix + "-burstable-pod" + suid + ".slice",
		systemd + "/" + prefix + "-besteffort.slice/" + prefix + "-besteffort-pod" + suid + ".slice",
	}
}

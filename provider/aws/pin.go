package aws

import "github.com/podsecrets/podsecrets/provider"

// pinObjects returns objs with the versions of pin (Request.Pin): an object
// whose file and read match an entry is read at the entry's version (a
// Secrets Manager VersionId, an SSM version number) instead of by label. The
// read must match as well as the file, so that a class edited to put another
// object at that file is not served the old object's version; the read
// names its region, so a fetch from the failover region reads current
// versions. objs is the parse cache's and is never modified: the pinned
// objects are copies. A pinned object is never optional: a recorded version
// the store no longer has fails the fetch with ErrNotFound, so that the
// driver mounts the current versions instead (see Request.Pin), in which
// an optional object the store does not have at all is left out.
func pinObjects(objs []object, pin []provider.ObjectVersion, region string) []object {
	if len(pin) == 0 {
		return objs
	}
	byPath := make(map[string]provider.ObjectVersion, len(pin))
	for _, p := range pin {
		byPath[p.Path] = p
	}
	out := make([]object, len(objs))
	copy(out, objs)
	for i := range out {
		o := &out[i]
		p, ok := byPath[o.Path]
		if ok && p.Version != "" && p.Source == sourceOf(keyOf(o, false), region) {
			o.ref = ref{Name: o.Name, Version: p.Version}
			o.Optional = false
		}
	}
	return out
}

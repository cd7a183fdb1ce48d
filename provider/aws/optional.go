package aws

import (
	"fmt"
	"strings"

	"github.com/podsecrets/podsecrets/mount"
	"github.com/podsecrets/podsecrets/provider"
)

// Optional objects.
//
// An objects entry with optional: true may be missing from the store: a
// read that fails with ErrNotFound (ResourceNotFoundException, SSM's
// InvalidParameters or ParameterNotFound, a version or label the object
// does not have) leaves the object and its jmesPath files out of the
// volume, and a Warning names it. Every other failure (access denied,
// throttling, the store down) still fails the mount: a pod must not start
// without a secret because the store was briefly unreachable. A read that
// a required object of the class shares stays required.
//
// A rotation check picks an optional object up once it appears (the
// volume does not hold it, so the check reads it). One that disappears
// stays in the volume at the version it holds, with a Warning: a check
// never removes a file from under a running app because of the store,
// as a failed check keeps every file. Pods mounting after that go
// without it.

// Warning reasons of optional objects.
const (
	// ReasonOptionalObjectSkipped: an optional object the store does
	// not have was left out of the volume.
	ReasonOptionalObjectSkipped = "OptionalObjectSkipped"
	// ReasonOptionalObjectGone: a rotation check found an optional
	// object gone and kept the version the volume holds.
	ReasonOptionalObjectGone = "OptionalObjectGone"
)

// maxFilesNamed bounds the file names a warning lists.
const maxFilesNamed = 5

// missingWarning reports object o of class, which the store does not have
// (err says so): left out, or, when kept is the value a check keeps from
// the volume, kept at its held version.
func missingWarning(class string, o *object, kept *result, err error) provider.Warning {
	if kept != nil {
		return provider.Warning{Reason: ReasonOptionalObjectGone, Message: fmt.Sprintf(
			"SecretProviderClass %s: %s is optional and no longer in the store; the volume keeps version %s, pods mounting from now on go without it: %v",
			class, o.describe(), kept.version, err)}
	}
	return provider.Warning{Reason: ReasonOptionalObjectSkipped, Message: fmt.Sprintf(
		"SecretProviderClass %s: %s is optional and not in the store; left out of the volume: %s: %v",
		class, o.describe(), filesOf(o), err)}
}

// filesOf names the files of o for messages.
func filesOf(o *object) string {
	names := []string{mount.QuoteName(o.Path)}
	for _, e := range o.JMES {
		names = append(names, mount.QuoteName(e.Path))
	}
	if len(names) == 1 {
		return "file " + names[0]
	}
	if len(names) > maxFilesNamed {
		names = append(names[:maxFilesNamed], fmt.Sprintf("and %d more", len(names)-maxFilesNamed))
	}
	return "files " + strings.Join(names, ", ")
}

// boundWarnings keeps the first maxKeyWarnings of ws, the missing objects
// of class, and counts the rest in one more: each becomes a pod event.
func boundWarnings(ws []provider.Warning, class string) []provider.Warning {
	if len(ws) <= maxKeyWarnings {
		return ws
	}
	return append(ws[:maxKeyWarnings:maxKeyWarnings], provider.Warning{Reason: ReasonOptionalObjectSkipped, Message: fmt.Sprintf(
		"SecretProviderClass %s: %d more optional objects are not in the store", class, len(ws)-maxKeyWarnings)})
}

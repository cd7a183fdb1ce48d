//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestEventsTellTheStory: what a pod got and what went wrong reads from the
// pod's events alone (what `kubectl events --for pod/NAME` shows): a Warning
// for an unknown class key with the key it meant, and a Normal
// SecretsMounted naming every object at its version, never a value.
func TestEventsTellTheStory(t *testing.T) {
	tn := newTenant(t, "events")
	ns := tn.ns
	const value = "CANARY-events-value"
	putSecret(t, tn.secret("db"), value)
	createClass(t, ns, "story", fmt.Sprintf("- {objectName: %q, objectType: secretsmanager, objectAlais: db}", tn.secret("db")))
	createPod(t, ns, podSpec("story", podOpts{class: "story"}))
	waitRunning(t, ns, "story")
	waitEvent(t, ns, "story", "UnknownParameterKey", "objectAlais", `"objectAlias"`)
	msg := waitEvent(t, ns, "story", "SecretsMounted", "SecretProviderClass "+ns+"/story: mounted ", tn.secret("db"))
	if !strings.Contains(msg, "@") || !strings.Contains(msg, " in ") {
		t.Errorf("SecretsMounted %q: want object@version and the duration", msg)
	}
	if evs := eventsOf(ns, "story"); strings.Contains(evs, value) {
		t.Fatalf("an event holds the secret's value:\n%s", evs)
	}
}

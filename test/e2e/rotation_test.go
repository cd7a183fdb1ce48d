//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podsecrets/podsecrets/test/awsfake/store"
)

// Rotation on a real node: kubelet republishes every mounted volume
// (requiresRepublish; the test cluster's kubelet syncs pods every 10 s), and
// a republish past the class's poll interval checks the store and swaps a
// changed set in whole. The overlay lowers the driver's --min-poll-interval
// to 1s, so these classes poll every 5 s.
const (
	pollInterval = "5s"
	// rotationTimeout bounds the time from a change in the store to the
	// pod's files: the poll interval, kubelet's next republish (10 s plus
	// its jitter), and a version learned by another volume of the same
	// identity that may answer for up to another interval.
	rotationTimeout = 90 * time.Second
)

// createRotatingClass creates an aws SecretProviderClass with objects that
// rotates every interval.
func createRotatingClass(t *testing.T, ns, name, objects, interval string) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "podsecrets.dev/v1",
		"kind":       "SecretProviderClass",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"provider":   "aws",
			"parameters": map[string]any{"objects": objects},
			"rotation":   map[string]any{"pollInterval": interval},
		},
	}}
	if _, err := dyn.Resource(classes).Namespace(ns).Create(ctxT(t), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// loopOpts shape readerLoop.
type loopOpts struct {
	files  []string // read, in this order, below one resolution of ..data
	prefix int      // read only this many bytes of each file (0: its first line)
	record bool     // also print the volume's record from the same version
	probe  bool     // also try to create a file in the volume on every round
	pause  int      // microseconds between rounds
}

// readerLoop is a container script that, many times a second, resolves
// ..data once and reads every file of o.files below what it resolved to,
// the way an application that needs its files to agree reads them. It
// prints
//
//	SET <round> <version dir> <value>... [<record>]  when the values change
//	BROKEN <round> <version dir>                     when ..data still names a version that lacks a file
//	WROTE <round>                                    when a file could be created in the volume (probe)
//	TICK <round> <reads that found their version removed>  every 500 rounds
//
// A version the swap has just replaced is removed after ..data moved on, so
// a round that resolved it a moment before may find its files gone: that
// round is counted and skipped, as a reader would retry it.
func readerLoop(o loopOpts) string {
	var b strings.Builder
	b.WriteString("s=/mnt/secrets; last=; n=0; g=0\nwhile :; do\n  n=$((n+1))\n  d=$(readlink $s/..data)\n")
	rd := "read -r"
	if o.prefix > 0 {
		rd += fmt.Sprintf(" -n %d", o.prefix)
	}
	var vals, missing []string
	for i, f := range o.files {
		v := fmt.Sprintf("v%d", i)
		// A failed redirection leaves the variable GONE.
		fmt.Fprintf(&b, "  %s=GONE; { %s %s < $s/$d/%s; } 2>/dev/null\n", v, rd, v, f)
		vals = append(vals, "$"+v)
		missing = append(missing, fmt.Sprintf(`[ "$%s" = GONE ]`, v))
	}
	rec := ""
	if o.record {
		b.WriteString("  r=; { read -r r < $s/$d/..podsecrets.json; } 2>/dev/null\n")
		missing = append(missing, `[ -z "$r" ]`)
		rec = " $r"
	}
	cur := strings.Join(vals, " ")
	fmt.Fprintf(&b, "  if %s; then\n", strings.Join(missing, " || "))
	b.WriteString(`    if [ "$(readlink $s/..data)" = "$d" ]; then echo "BROKEN $n $d"; else g=$((g+1)); fi` + "\n")
	fmt.Fprintf(&b, "  elif [ \"%s\" != \"$last\" ]; then\n    echo \"SET $n $d %s%s\"; last=\"%s\"\n  fi\n", cur, cur, rec, cur)
	if o.probe {
		b.WriteString("  if { true > $s/probe; } 2>/dev/null; then echo \"WROTE $n\"; rm -f $s/probe; fi\n")
	}
	b.WriteString("  if [ $((n % 500)) = 0 ]; then echo \"TICK $n $g\"; fi\n")
	fmt.Fprintf(&b, "  usleep %d\ndone\n", o.pause)
	return b.String()
}

// loopLine is a parsed line of readerLoop's output.
type loopLine struct {
	at    time.Time
	kind  string // SET, BROKEN, WROTE, TICK
	round int
	dir   string
	vals  []string
	rec   string
	gone  int // TICK
}

func parseLoop(lines []logLine, files int) []loopLine {
	var out []loopLine
	for _, l := range lines {
		f := strings.Fields(l.text)
		if len(f) < 2 {
			continue
		}
		ll := loopLine{at: l.at, kind: f[0]}
		ll.round, _ = strconv.Atoi(f[1])
		switch {
		case f[0] == "SET" && len(f) >= 3+files:
			ll.dir = f[2]
			ll.vals = f[3 : 3+files]
			ll.rec = strings.Join(f[3+files:], " ")
		case f[0] == "BROKEN" && len(f) >= 3:
			ll.dir = f[2]
		case f[0] == "WROTE":
		case f[0] == "TICK" && len(f) == 3:
			ll.gone, _ = strconv.Atoi(f[2])
		default:
			continue
		}
		out = append(out, ll)
	}
	return out
}

// loopPod is a pod of class running readerLoop(o), deleted when the test
// ends.
func loopPod(t *testing.T, ns, name, class string, o loopOpts) *corev1.Pod {
	t.Helper()
	p := podSpec(name, podOpts{class: class})
	p.Spec.Containers[0].Command = []string{"sh", "-c", readerLoop(o)}
	createPod(t, ns, p)
	t.Cleanup(func() { deleteAndForget(t, ns, name) })
	return waitRunning(t, ns, name)
}

// deleteAndForget deletes pod ns/name and waits (bounded) until it is gone.
func deleteAndForget(t *testing.T, ns, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kube.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete pod %s/%s: %v", ns, name, err)
		return
	}
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Errorf("pod %s/%s not deleted: %v", ns, name, err)
	}
}

// waitSet waits until pod's readerLoop printed a SET line whose values
// satisfy ok, and returns that line and every line printed so far.
func waitSet(ctx context.Context, t *testing.T, ns, pod string, files int, timeout time.Duration, what string, ok func([]string) bool) (loopLine, []loopLine) {
	t.Helper()
	var all []loopLine
	var hit loopLine
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		lines, err := timedLogs(ctx, ns, pod)
		if err != nil {
			return false, nil
		}
		all = parseLoop(lines, files)
		for _, l := range all {
			if l.kind == "SET" && ok(l.vals) {
				hit = l
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		var last []string
		for _, l := range all {
			if l.kind == "SET" {
				last = l.vals
			}
		}
		t.Fatalf("%s/%s never showed %s within %v (its last values: %.80q): %v\nevents:\n%s", ns, pod, what, timeout, last, err, eventsOf(ns, pod))
	}
	return hit, all
}

func is(want ...string) func([]string) bool {
	return func(v []string) bool { return slices.Equal(v, want) }
}

// podEvent returns the newest event of reason on pod (nil if none).
func podEvent(t *testing.T, ns, pod, reason string) *corev1.Event {
	t.Helper()
	evs, err := kube.CoreV1().Events(ns).List(ctxT(t), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		t.Fatal(err)
	}
	var out *corev1.Event
	for i, e := range evs.Items {
		if e.Reason == reason && (out == nil || e.LastTimestamp.After(out.LastTimestamp.Time)) {
			out = &evs.Items[i]
		}
	}
	return out
}

// checkLoopHealthy fails for BROKEN lines (a current version lacking a
// file) and WROTE lines (a write into the volume succeeded) and logs how
// fast the loop read.
func checkLoopHealthy(t *testing.T, pod string, all []loopLine) {
	t.Helper()
	var ticks, wrote []loopLine
	for _, l := range all {
		switch l.kind {
		case "BROKEN":
			t.Errorf("%s: round %d: ..data named %s, which lacked a file", pod, l.round, l.dir)
		case "WROTE":
			wrote = append(wrote, l)
		case "TICK":
			ticks = append(ticks, l)
		}
	}
	if len(wrote) > 0 {
		t.Errorf("%s: the pod created a file in its secrets volume in %d rounds: %s", pod, len(wrote), spans(wrote))
	}
	if len(ticks) >= 2 {
		a, b := ticks[0], ticks[len(ticks)-1]
		t.Logf("%s: reader resolved ..data %.0f times a second; %d rounds found their version just removed (and retried)",
			pod, float64(b.round-a.round)/b.at.Sub(a.at).Seconds(), b.gone)
	}
}

// spans condenses lines of consecutive rounds into time spans.
func spans(ls []loopLine) string {
	var out []string
	for i := 0; i < len(ls); {
		j := i
		for j+1 < len(ls) && ls[j+1].round == ls[j].round+1 {
			j++
		}
		if i == j {
			out = append(out, ls[i].at.Format("15:04:05.000"))
		} else {
			out = append(out, fmt.Sprintf("%s–%s (%d rounds)", ls[i].at.Format("15:04:05.000"), ls[j].at.Format("15:04:05.000"), j-i+1))
		}
		i = j + 1
	}
	if len(out) > 12 {
		out = append(out[:12], fmt.Sprintf("and %d more", len(out)-12))
	}
	return strings.Join(out, ", ")
}

// rotateTo makes a new version with put and waits for the pod's reader to
// see the set want (what names it), logging the time from the put; it
// checks that the reader stayed healthy and returns every line it printed.
func rotateTo(ctx context.Context, t *testing.T, ns, pod string, files int, what string, want func([]string) bool, put func()) []loopLine {
	t.Helper()
	putAt := time.Now()
	put()
	hit, all := waitSet(ctx, t, ns, pod, files, rotationTimeout, what, want)
	t.Logf("rotation latency (put → the pod reads %s): %v", what, hit.at.Sub(putAt).Round(time.Millisecond))
	checkLoopHealthy(t, pod, all)
	return all
}

// onlySets fails for every round of all that read, through one ..data, a
// set that is none of sets: files that changed apart.
func onlySets(t *testing.T, all []loopLine, files string, sets ...func([]string) bool) {
	t.Helper()
next:
	for _, l := range all {
		if l.kind != "SET" {
			continue
		}
		for _, ok := range sets {
			if ok(l.vals) {
				continue next
			}
		}
		t.Errorf("round %d: the pod read %s %q through one ..data, a set the store never held", l.round, files, l.vals)
	}
}

// TestRotationJWTCurrentAndPrevious rotates a secret read twice, by
// AWSCURRENT and AWSPREVIOUS: a reader that resolves ..data once sees the
// old pair or the new one, never the new current with the old previous.
func TestRotationJWTCurrentAndPrevious(t *testing.T) {
	ctx := ctxT(t)
	tn := newTenant(t, "rotjwt")
	ns := tn.ns
	name := tn.secret("jwt")
	k := func(i int) string { return fmt.Sprintf("k%d-%s", i, ns) }
	arn, v1 := putSecretVersion(t, name, k(1))
	_, v2 := putSecretVersion(t, name, k(2))
	createRotatingClass(t, ns, "jwt", fmt.Sprintf(`
- {objectName: %q, objectType: secretsmanager, objectAlias: current}
- {objectName: %q, objectType: secretsmanager, objectVersionLabel: AWSPREVIOUS, objectAlias: previous}
`, name, name), pollInterval)

	p := loopPod(t, ns, "jwt", "jwt", loopOpts{files: []string{"current", "previous"}, pause: 10000})
	waitSet(ctx, t, ns, "jwt", 2, time.Minute, "k2 k1", is(k(2), k(1)))

	var v3 string
	all := rotateTo(ctx, t, ns, "jwt", 2, "k3 k2", is(k(3), k(2)), func() { _, v3 = putSecretVersion(t, name, k(3)) })
	onlySets(t, all, "current and previous", is(k(2), k(1)), is(k(3), k(2)))

	pod, err := kube.CoreV1().Pods(ns).Get(ctx, "jwt", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != corev1.PodRunning || containerStatus(pod, "app").RestartCount != 0 {
		t.Errorf("pod %s with %d restarts, want Running without restarts", pod.Status.Phase, containerStatus(pod, "app").RestartCount)
	}
	// The files, the read-only mount and EROFS, from the container.
	checkFromContainer(t, p, map[string]string{"current": k(3), "previous": k(2)})

	msg := waitEvent(t, ns, "jwt", "SecretsRotated", arn+"@"+v2+"→"+v3, arn+"@"+v1+"→"+v2, "SecretProviderClass "+ns+"/jwt")
	if e := podEvent(t, ns, "jwt", "SecretsRotated"); e == nil || e.Type != corev1.EventTypeNormal {
		t.Errorf("SecretsRotated event %+v: want type Normal", e)
	}
	t.Logf("event: %s", msg)

	logs := driverLogs(t)
	for i := 1; i <= 3; i++ {
		if strings.Contains(logs, k(i)) {
			t.Errorf("the driver's logs hold the value of version %d", i)
		}
	}
}

// TestRotationJSONCredentialsTogether rotates one JSON secret whose fields
// are files of their own: username and password change together.
func TestRotationJSONCredentialsTogether(t *testing.T) {
	ctx := ctxT(t)
	tn := newTenant(t, "rotjson")
	ns := tn.ns
	name := tn.secret("db")
	u := func(i int) string { return fmt.Sprintf("u%d-%s", i, ns) }
	pw := func(i int) string { return fmt.Sprintf("p%d-%s", i, ns) }
	doc := func(i int) string { return fmt.Sprintf(`{"username":%q,"password":%q}`, u(i), pw(i)) }
	arn, v1 := putSecretVersion(t, name, doc(1))
	createRotatingClass(t, ns, "db", fmt.Sprintf(`
- objectName: %q
  objectType: secretsmanager
  objectAlias: db.json
  jmesPath:
    - {path: username, objectAlias: username}
    - {path: password, objectAlias: password}
`, name), pollInterval)

	p := loopPod(t, ns, "db", "db", loopOpts{files: []string{"username", "password"}, pause: 10000})
	waitSet(ctx, t, ns, "db", 2, time.Minute, "u1 p1", is(u(1), pw(1)))

	var v2 string
	all := rotateTo(ctx, t, ns, "db", 2, "u2 p2", is(u(2), pw(2)), func() { _, v2 = putSecretVersion(t, name, doc(2)) })
	onlySets(t, all, "username and password", is(u(1), pw(1)), is(u(2), pw(2)))
	checkFromContainer(t, p, map[string]string{"db.json": doc(2), "username": u(2), "password": pw(2)})
	waitEvent(t, ns, "db", "SecretsRotated", arn+"@"+v1+"→"+v2)
}

// TestRotationSSMParameter rotates an SSM parameter.
func TestRotationSSMParameter(t *testing.T) {
	ctx := ctxT(t)
	tn := newTenant(t, "rotssm")
	ns := tn.ns
	name := "/e2e/" + ns + "/flag"
	val := func(i int) string { return fmt.Sprintf("flag-%d-%s", i, ns) }
	first := putParameter(t, name, val(1))
	createRotatingClass(t, ns, "flag", fmt.Sprintf(`
- {objectName: %q, objectType: ssmparameter, objectAlias: flag}
`, name), pollInterval)

	p := loopPod(t, ns, "flag", "flag", loopOpts{files: []string{"flag"}, pause: 50000})
	waitSet(ctx, t, ns, "flag", 1, time.Minute, "version 1", is(val(1)))

	var second int64
	rotateTo(ctx, t, ns, "flag", 1, "version 2", is(val(2)), func() { second = putParameter(t, name, val(2)) })
	checkFromContainer(t, p, map[string]string{"flag": val(2)})
	waitEvent(t, ns, "flag", "SecretsRotated", fmt.Sprintf("%s@%d→%d", name, first, second))
}

// TestRotationStoreDown: while every store call fails, a rotation check
// fails without touching the pod, which keeps its files and runs on; once
// the store is back the retry brings the new value.
func TestRotationStoreDown(t *testing.T) {
	ctx := ctxT(t)
	tn := newTenant(t, "rotdown")
	ns := tn.ns
	name := tn.secret("api")
	val := func(i int) string { return fmt.Sprintf("api-%d-%s", i, ns) }
	putSecretVersion(t, name, val(1))
	createRotatingClass(t, ns, "api", fmt.Sprintf(`
- {objectName: %q, objectType: secretsmanager, objectAlias: api}
`, name), pollInterval)

	p := loopPod(t, ns, "api", "api", loopOpts{files: []string{"api"}, pause: 50000})
	waitSet(ctx, t, ns, "api", 1, time.Minute, "version 1", is(val(1)))

	// Every call of every region (and STS) fails; the control endpoints
	// are never faulted. Other tests share the store: the fault goes
	// whatever happens here.
	clear := func() error {
		_, err := seedCall(store.Seed{Faults: map[string]store.Fault{"": {}}})
		return err
	}
	t.Cleanup(func() {
		if err := clear(); err != nil {
			t.Errorf("clear the store fault: %v", err)
		}
	})
	if _, err := seedCall(store.Seed{Faults: map[string]store.Fault{"": {Rate: 1, Code: store.FaultInternal}}}); err != nil {
		t.Fatal(err)
	}
	putSecretVersion(t, name, val(2))
	failedAt := time.Now()
	msg := waitEvent(t, ns, "api", "RotationFailed")
	t.Logf("RotationFailed %v after the put: %s", time.Since(failedAt).Round(time.Millisecond), msg)
	if e := podEvent(t, ns, "api", "RotationFailed"); e == nil || e.Type != corev1.EventTypeWarning {
		t.Errorf("RotationFailed event %+v: want type Warning", e)
	}

	// The pod keeps its files, runs, and was not restarted.
	lines, err := timedLogs(ctx, ns, "api")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range parseLoop(lines, 1) {
		if l.kind == "SET" && !is(val(1))(l.vals) {
			t.Errorf("round %d: the pod read %q while the store was down", l.round, l.vals[0])
		}
	}
	checkFromContainer(t, p, map[string]string{"api": val(1)})
	pod, err := kube.CoreV1().Pods(ns).Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != corev1.PodRunning || containerStatus(pod, "app").RestartCount != 0 || !containerStatus(pod, "app").Ready {
		t.Errorf("pod %s, ready %t, %d restarts: want Running and ready without restarts", pod.Status.Phase,
			containerStatus(pod, "app").Ready, containerStatus(pod, "app").RestartCount)
	}

	if err := clear(); err != nil {
		t.Fatal(err)
	}
	clearedAt := time.Now()
	// The retry waits out the backoff (10 s, doubling) and a republish.
	hit, all := waitSet(ctx, t, ns, "api", 1, 2*time.Minute, "version 2", is(val(2)))
	t.Logf("the new value reached the pod %v after the store came back", hit.at.Sub(clearedAt).Round(time.Millisecond))
	checkLoopHealthy(t, "api", all)
	checkFromContainer(t, p, map[string]string{"api": val(2)})
	waitEvent(t, ns, "api", "SecretsRotated")
	var failed int32
	if e := podEvent(t, ns, "api", "RotationFailed"); e != nil {
		failed = e.Count
	}
	t.Logf("RotationFailed event count on the pod: %d", failed)
}

// genValue is secret i's value of generation gen: a marker the readers
// compare, padded to size.
func genValue(gen, i, size int) string {
	head := fmt.Sprintf("gen-%04d-s%d-", gen, i)
	tail := fmt.Sprintf("-end-%04d", gen)
	pad := strings.Repeat(fmt.Sprintf("%04d", gen), (size-len(head)-len(tail))/4+1)
	return head + pad[:size-len(head)-len(tail)] + tail
}

// genOf parses the marker of genValue ("gen-0007-" → 7).
func genOf(s string) (int, bool) {
	if !strings.HasPrefix(s, "gen-") || len(s) < 9 {
		return 0, false
	}
	n, err := strconv.Atoi(s[4:8])
	return n, err == nil
}

// minGen is the oldest generation of a set.
func minGen(vals []string) (int, bool) {
	m := -1
	for _, v := range vals {
		g, ok := genOf(v)
		if !ok {
			return 0, false
		}
		if m < 0 || g < m {
			m = g
		}
	}
	return m, m >= 0
}

// genBook remembers the generation of every version put.
type genBook struct {
	mu     sync.Mutex
	gen    map[string]int    // version ID → generation
	putAt  map[int]time.Time // generation → when its round was put
	values map[int][3]string // generation → values
}

// TestRotationDriverKilledDuringSwaps rotates the three secrets of ten pods
// every two seconds for a minute and SIGKILLs the driver three times,
// preferably while some volume is writable, i.e. inside a swap. Every reader
// must always see a whole set through one ..data, the one the version's
// record names; no pod restarts; every pod ends on the last generation, with
// a read-only volume holding just ..data, one version and the links.
func TestRotationDriverKilledDuringSwaps(t *testing.T) {
	const (
		pods      = 10
		objSize   = 60 << 10 // each secret; Secrets Manager's limit is 64 KiB
		every     = 2 * time.Second
		rotateFor = time.Minute
	)
	killAt := []time.Duration{8 * time.Second, 25 * time.Second, 42 * time.Second}
	const killWindow = 8 * time.Second // waiting for a writable volume past each killAt
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	dp := driverPod(ctx, t)
	if n := containerStatus(dp, driverContainer).RestartCount; n > 0 {
		// Kubelet's crash-loop backoff of the driver container grows with
		// each restart: a new pod starts it again at 10 s.
		t.Logf("the driver container restarted %d times before this test: replacing its pod", n)
		restartDriver(t)
		dp = driverPod(ctx, t)
	}
	waitDriverReady(ctx, t, dp.Name)
	restartsBefore := containerStatus(dp, driverContainer).RestartCount
	pid := onePID(t, dp)
	var logs []string
	follow := followDriverLogs(ctx, t, dp.Name)

	tn := newTenant(t, "rotkill")
	ns := tn.ns
	names := [3]string{tn.secret("s1"), tn.secret("s2"), tn.secret("s3")}
	book := &genBook{gen: map[string]int{}, putAt: map[int]time.Time{}, values: map[int][3]string{}}
	// putRound puts generation gen of the three secrets at once.
	putRound := func(gen int) error {
		var vals [3]string
		var ids [3]string
		errs := make(chan error, 3)
		at := time.Now()
		for i := range names {
			vals[i] = genValue(gen, i+1, objSize)
			go func() {
				r, err := seedCall(store.Seed{Secrets: []store.SeedSecret{{Region: region, Name: names[i], Value: vals[i]}}})
				if err == nil {
					ids[i] = r.Secrets[0].VersionID
				}
				errs <- err
			}()
		}
		var err error
		for range names {
			err = errors.Join(err, <-errs)
		}
		book.mu.Lock()
		defer book.mu.Unlock()
		for _, id := range ids {
			book.gen[id] = gen
		}
		book.putAt[gen] = at
		book.values[gen] = vals
		return err
	}
	if err := putRound(0); err != nil {
		t.Fatal(err)
	}
	createRotatingClass(t, ns, "kill", fmt.Sprintf(`
- {objectName: %q, objectType: secretsmanager, objectAlias: s1}
- {objectName: %q, objectType: secretsmanager, objectAlias: s2}
- {objectName: %q, objectType: secretsmanager, objectAlias: s3}
`, names[0], names[1], names[2]), pollInterval)

	loop := loopOpts{files: []string{"s1", "s2", "s3"}, prefix: 9, record: true, pause: 20000}
	specs := make([]*corev1.Pod, pods)
	podNames := make([]string, pods)
	for i := range specs {
		podNames[i] = fmt.Sprintf("kill-%02d", i)
		specs[i] = podSpec(podNames[i], podOpts{class: "kill"})
		specs[i].Spec.Containers[0].Command = []string{"sh", "-c", readerLoop(loop)}
	}
	created := createPods(ctx, t, ns, specs)
	uids := make([]string, pods)
	for i, p := range created {
		uids[i] = string(p.UID)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("driver logs (the last container followed, tail):\n%s", tail(follow.String(), 60))
		}
	})
	cleanupOnFailure(t, ns, dp, restartsBefore+int32(len(killAt)), uids)
	waitAllRunning(ctx, t, ns, pods, 4*time.Minute, nil)

	// allShow waits until every pod's reader shows generation gen in all
	// three files, and returns every pod's lines.
	allShow := func(gen int, timeout time.Duration) map[string][]loopLine {
		t.Helper()
		out := map[string][]loopLine{}
		var behind []string
		err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
			behind = behind[:0]
			for _, name := range podNames {
				lines, err := timedLogs(ctx, ns, name)
				if err != nil {
					behind = append(behind, name+" (no log)")
					continue
				}
				out[name] = parseLoop(lines, 3)
				var last []string
				for _, l := range out[name] {
					if l.kind == "SET" {
						last = l.vals
					}
				}
				want := fmt.Sprintf("gen-%04d-", gen)
				if !slices.Equal(last, []string{want, want, want}) {
					behind = append(behind, fmt.Sprintf("%s %v", name, last))
				}
			}
			return len(behind) == 0, nil
		})
		if err != nil {
			t.Fatalf("not every pod shows generation %d after %v: %v: %v", gen, timeout, behind, err)
		}
		return out
	}
	allShow(0, time.Minute)

	// Rotate every two seconds for a minute.
	start := time.Now()
	lastGen := make(chan int, 1)
	roundErr := make(chan error, 1)
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		gen := 0
		for time.Since(start) < rotateFor && ctx.Err() == nil {
			gen++
			if err := putRound(gen); err != nil {
				roundErr <- fmt.Errorf("round %d: %w", gen, err)
				break
			}
			<-tick.C
		}
		lastGen <- gen
	}()

	type kill struct {
		at           time.Duration
		writable     int // pods' volumes writable (inside a swap) when it landed
		restartAfter time.Duration
	}
	var kills []kill
	for i, at := range killAt {
		// Past the kill's time, wait for a volume being swapped (its
		// file system writable), for at most killWindow.
		err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, rotateFor+time.Minute, true, func(context.Context) (bool, error) {
			el := time.Since(start)
			if el < at {
				return false, nil
			}
			vols, _ := nodeVolumes(t, uids)
			for _, v := range vols {
				if !v.readOnly {
					return true, nil
				}
			}
			return el >= at+killWindow, nil
		})
		if err != nil {
			t.Fatalf("waiting for kill %d: %v", i+1, err)
		}
		killDriver(ctx, t, pid)
		k := kill{at: time.Since(start)}
		vols, _ := nodeVolumes(t, uids)
		for _, v := range vols {
			if !v.readOnly {
				k.writable++
			}
		}
		killedAt := time.Now()
		pid = waitDriverRestarted(ctx, t, dp.Name, restartsBefore+int32(i)+1, restartsBefore, pid)
		waitDriverReady(ctx, t, dp.Name)
		k.restartAfter = time.Since(killedAt)
		t.Logf("kill %d at %v: %d of %d volumes writable (inside a swap); driver back and ready after %v",
			i+1, k.at.Round(time.Millisecond), k.writable, pods, k.restartAfter.Round(100*time.Millisecond))
		if !follow.ended(30 * time.Second) {
			t.Fatalf("the log of the driver container killed by kill %d did not end", i+1)
		}
		logs = append(logs, follow.String())
		follow = followDriverLogs(ctx, t, dp.Name)
		kills = append(kills, k)
	}
	waitDriverReady(ctx, t, dp.Name)
	var last int
	select {
	case last = <-lastGen:
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	select {
	case err := <-roundErr:
		t.Fatal(err)
	default:
	}
	t.Logf("%d rounds put in %v", last, time.Since(start).Round(time.Millisecond))

	// Every pod reaches the last generation: the driver's restart after
	// the last kill (up to 40 s of crash-loop backoff), a republish, a
	// check.
	byPod := allShow(last, 3*time.Minute)

	// Each set a reader saw through one ..data is the one the version's
	// record names. Rounds are put three secrets at a time, so a check
	// that ran in the middle of a put may legitimately find s1 at one
	// generation and s2 at the previous one: such a set is whole (its
	// record says so) and is only counted.
	book.mu.Lock()
	genOfVersion := maps.Clone(book.gen)
	book.mu.Unlock()
	straddled, sets := 0, 0
	for _, name := range podNames {
		for _, l := range byPod[name] {
			if l.kind != "SET" {
				continue
			}
			sets++
			var rec struct {
				Objects []struct{ Path, Version string }
			}
			if err := json.Unmarshal([]byte(l.rec), &rec); err != nil {
				t.Errorf("%s: round %d: unreadable record %.200q: %v", name, l.round, l.rec, err)
				continue
			}
			recGen := map[string]int{}
			for _, o := range rec.Objects {
				g, ok := genOfVersion[o.Version]
				if !ok {
					t.Errorf("%s: round %d: the record names version %s of %s, which was never put", name, l.round, o.Version, o.Path)
				}
				recGen[o.Path] = g
			}
			var gens []int
			for i, v := range l.vals {
				g, ok := genOf(v)
				if !ok {
					t.Errorf("%s: round %d: s%d reads %q, not a generation marker", name, l.round, i+1, v)
					continue
				}
				gens = append(gens, g)
				if rg, ok := recGen[loop.files[i]]; !ok || rg != g {
					t.Errorf("%s: round %d: %s in %s is generation %d, its record says %d (%t): a torn set", name, l.round, loop.files[i], l.dir, g, rg, ok)
				}
			}
			if slices.Min(gens) != slices.Max(gens) {
				straddled++
				t.Logf("%s: round %d: a whole set across a put round, generations %v (the record agrees)", name, l.round, gens)
			}
		}
		checkLoopHealthy(t, name, byPod[name])
	}

	// Latency: from each round's put to the last pod reading at least that
	// generation.
	var lat []time.Duration
	book.mu.Lock()
	putAt := book.putAt
	want := book.values[last]
	book.mu.Unlock()
	for gen := 1; gen <= last; gen++ {
		var worst time.Duration
		for _, name := range podNames {
			for _, l := range byPod[name] {
				if l.kind != "SET" {
					continue
				}
				if g, ok := minGen(l.vals); ok && g >= gen {
					worst = max(worst, l.at.Sub(putAt[gen]))
					break
				}
			}
		}
		lat = append(lat, worst)
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	// A round put while the driver is down waits for its restart and for
	// kubelet, which backs off republishing a volume whose republish
	// failed (0.5 s doubling).
	t.Logf("rotation latency, put → last of %d pods reading it (or newer), over %d rounds, kills included: min %v, median %v, max %v; last round %v; %d sets seen, %d across a round",
		pods, len(lat), sorted[0].Round(time.Millisecond), sorted[len(sorted)/2].Round(time.Millisecond),
		sorted[len(sorted)-1].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), sets, straddled)

	// From the containers: the last generation, a read-only tmpfs, EROFS;
	// and no restart.
	l, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := map[string]string{"s1": want[0], "s2": want[1], "s3": want[2]}
	for _, p := range l.Items {
		if s := containerStatus(&p, "app"); s.RestartCount != 0 || p.Status.Phase != corev1.PodRunning {
			t.Errorf("%s: %s with %d restarts, want Running without restarts", p.Name, p.Status.Phase, s.RestartCount)
		}
		checkFromContainer(t, &p, wantFiles)
	}
	// From the node: each volume holds ..data, the one version it names
	// and the links, on a read-only tmpfs mounted once.
	vols, stacked := nodeVolumes(t, uids)
	for _, uid := range uids {
		v, ok := vols[uid]
		switch {
		case !ok:
			t.Errorf("pod %s: no volume mounted", uid)
			continue
		case !v.complete():
			t.Errorf("pod %s: volume %+v not complete and read-only", uid, v)
		case stacked[uid] != 1:
			t.Errorf("pod %s: %d mounts stacked on its volume", uid, stacked[uid])
		}
		if stray := volumeLayout(volumeTarget(uid), loop.files); len(stray) > 0 {
			t.Errorf("pod %s: volume layout: %v", uid, stray)
		}
	}

	// What the drivers did, from their logs.
	recs := parseLogs(strings.Join(append(logs, follow.String()), "\n"))
	counts := map[string]int{}
	for _, r := range recs {
		if r.Namespace == ns || r.Msg == "start: volumes on the node" {
			counts[r.Msg]++
		}
	}
	p := driverPod(ctx, t)
	restarts := containerStatus(p, driverContainer).RestartCount - restartsBefore
	t.Logf("driver restarts %d; log records for these pods: %d rotated, %d sealed, %d completed, %d published, %d failed checks, %d failed publishes",
		restarts, counts["volume rotated"], counts["volume sealed"], counts["volume completed"], counts["volume published"],
		counts["rotation check failed; the pod keeps its files"], counts["publish failed"])
	if restarts != int32(len(kills)) {
		t.Errorf("driver container restarted %d times, want %d (one per kill)", restarts, len(kills))
	}

	deleteAllPods(ctx, t, ns, 3*time.Minute)
	waitNodeClean(ctx, t, uids, 2*time.Minute)
}

// waitDriverRestarted waits for kubelet to run the driver container again
// after a kill (restart count want, counted from before) and returns the new
// driver process's PID.
func waitDriverRestarted(ctx context.Context, t *testing.T, pod string, want, before int32, oldPID int) int {
	t.Helper()
	var newPID int
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods(driverNS).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		s := containerStatus(p, driverContainer)
		if s.RestartCount < want || s.State.Running == nil {
			return false, nil
		}
		if s.RestartCount > want {
			return false, fmt.Errorf("driver restarted %d times, want %d: something else killed it", s.RestartCount-before, want-before)
		}
		ps := driverPIDs(t, string(p.UID))
		if len(ps) != 1 || ps[0] == oldPID {
			return false, nil
		}
		newPID = ps[0]
		return true, nil
	})
	if err != nil {
		t.Fatalf("driver not restarted: %v", err)
	}
	return newPID
}

// volumeLayout lists what does not belong in the volume at dir holding
// files: it must hold ..data naming a version directory, that directory
// (with the files and the record, nothing else), and one link through
// ..data per file.
func volumeLayout(dir string, files []string) []string {
	var bad []string
	ents, err := os.ReadDir(dir)
	if err != nil {
		return []string{err.Error()}
	}
	cur, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		return []string{"..data: " + err.Error()}
	}
	for _, e := range ents {
		n := e.Name()
		switch {
		case n == "..data":
		case n == cur && e.IsDir():
			inner, err := os.ReadDir(filepath.Join(dir, n))
			if err != nil {
				bad = append(bad, err.Error())
				break
			}
			var got []string
			for _, f := range inner {
				got = append(got, f.Name())
			}
			want := append(slices.Clone(files), "..podsecrets.json")
			sort.Strings(got)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				bad = append(bad, fmt.Sprintf("version %s holds %v, want %v", n, got, want))
			}
		case slices.Contains(files, n):
			target, err := os.Readlink(filepath.Join(dir, n))
			if err != nil || target != filepath.Join("..data", n) {
				bad = append(bad, fmt.Sprintf("%s is not a link to ..data/%s (%q, %v)", n, n, target, err))
			}
		default:
			bad = append(bad, fmt.Sprintf("stray %s (%v)", n, e.Type()))
		}
	}
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(dir, f)); errors.Is(err, fs.ErrNotExist) {
			bad = append(bad, "no link "+f)
		}
	}
	if !strings.HasPrefix(cur, "..v_") {
		bad = append(bad, "..data names "+cur)
	}
	return bad
}

// pinScript tries, many times a second, to open a file for writing in the
// volume; once that works it prints PINNED and keeps the file open.
const pinScript = `while :; do
  ( exec 3>/mnt/secrets/pinned || exit 1; echo PINNED; exec sleep 3600 ) 2>/dev/null
  usleep 5000
done`

// TestRotationVolumeNeverWritable: a pod must not be able to write into its
// secrets volume, during a rotation's swap either. One pod tries to create
// a file on every round of its reader loop; another tries to open a file for
// writing and, if it ever can, keeps it open, which makes remounting the
// file system read-only fail (EBUSY). Both volumes must stay read-only
// through four rotations.
func TestRotationVolumeNeverWritable(t *testing.T) {
	const objSize = 60 << 10 // a larger swap: a longer write window
	ctx := ctxT(t)
	tn := newTenant(t, "rotro")
	ns := tn.ns
	name := tn.secret("tok")
	putSecretVersion(t, name, genValue(1, 1, objSize))
	createRotatingClass(t, ns, "tok", fmt.Sprintf(`
- {objectName: %q, objectType: secretsmanager, objectAlias: tok}
`, name), pollInterval)

	prober := loopPod(t, ns, "prober", "tok", loopOpts{files: []string{"tok"}, prefix: 9, probe: true, pause: 2000})
	pp := podSpec("pinner", podOpts{class: "tok"})
	pp.Spec.Containers[0].Command = []string{"sh", "-c", pinScript}
	createPod(t, ns, pp)
	t.Cleanup(func() { deleteAndForget(t, ns, "pinner") })
	pinner := waitRunning(t, ns, "pinner")
	waitSet(ctx, t, ns, "prober", 1, time.Minute, "generation 1", is("gen-0001-"))

	for gen := 2; gen <= 5; gen++ {
		putSecretVersion(t, name, genValue(gen, 1, objSize))
		waitSet(ctx, t, ns, "prober", 1, rotationTimeout, fmt.Sprintf("generation %d", gen), is(fmt.Sprintf("gen-%04d-", gen)))
	}
	lines, err := timedLogs(ctx, ns, "prober")
	if err != nil {
		t.Fatal(err)
	}
	checkLoopHealthy(t, "prober", parseLoop(lines, 1))

	raw, err := kube.CoreV1().Pods(ns).GetLogs("pinner", &corev1.PodLogOptions{Timestamps: true}).Do(ctx).Raw()
	if err != nil {
		t.Fatal(err)
	}
	if pinned, _, ok := strings.Cut(string(raw), " PINNED"); ok {
		t.Errorf("pinner opened a file in its secrets volume for writing at %s and holds it open", pinned[strings.LastIndex(pinned, "\n")+1:])
	}
	// Whatever happened, both volumes must be read-only now, on the node;
	// a writer holding a file open keeps a remount to read-only failing.
	uids := []string{string(prober.UID), string(pinner.UID)}
	var vols map[string]nodeVolume
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		vols, _ = nodeVolumes(t, uids)
		for _, uid := range uids {
			if v, ok := vols[uid]; !ok || !v.complete() {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		for i, uid := range uids {
			if v := vols[uid]; !v.complete() {
				t.Errorf("%s: volume %+v: not read-only with ..data 30 s after the last rotation", []string{"prober", "pinner"}[i], v)
			}
		}
		if e := podEvent(t, ns, "pinner", "RotationFailed"); e != nil {
			t.Logf("pinner: RotationFailed ×%d: %s", e.Count, e.Message)
		}
	}
	for i, uid := range uids {
		if bad := volumeLayout(volumeTarget(uid), []string{"tok"}); len(bad) > 0 {
			t.Errorf("%s: volume layout: %v", []string{"prober", "pinner"}[i], bad)
		}
	}
}

// TestRotationReaderHoldsFileOpen: an application that keeps its secret
// file open (for reading only) across a rotation. The swap removes the old
// version while the file is open; the rotation must still complete, leave
// the volume read-only, and bring the new value.
func TestRotationReaderHoldsFileOpen(t *testing.T) {
	ctx := ctxT(t)
	tn := newTenant(t, "rothold")
	ns := tn.ns
	name := tn.secret("cert")
	val := func(i int) string { return fmt.Sprintf("cert-%d-%s", i, ns) }
	putSecretVersion(t, name, val(1))
	createRotatingClass(t, ns, "cert", fmt.Sprintf(`
- {objectName: %q, objectType: secretsmanager, objectAlias: cert}
`, name), pollInterval)

	hp := podSpec("holder", podOpts{class: "cert"})
	hp.Spec.Containers[0].Command = []string{"sh", "-c", "exec 3</mnt/secrets/cert; echo HELD; exec sleep 3600"}
	createPod(t, ns, hp)
	t.Cleanup(func() { deleteAndForget(t, ns, "holder") })
	holder := waitRunning(t, ns, "holder")
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		lines, err := timedLogs(ctx, ns, "holder")
		return err == nil && len(lines) > 0 && lines[0].text == "HELD", nil
	})
	if err != nil {
		t.Fatalf("the holder did not open its file: %v", err)
	}
	target := volumeTarget(string(holder.UID))

	putAt := time.Now()
	putSecretVersion(t, name, val(2))
	// The new value on the node, or the check's failure.
	var failed *corev1.Event
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, rotationTimeout, true, func(context.Context) (bool, error) {
		if b, err := os.ReadFile(filepath.Join(target, "cert")); err == nil && string(b) == val(2) {
			return true, nil
		}
		failed = podEvent(t, ns, "holder", "RotationFailed")
		return failed != nil, nil
	})
	if err != nil {
		t.Fatalf("neither the new value nor a RotationFailed event within %v: %v\nevents:\n%s", rotationTimeout, err, eventsOf(ns, "holder"))
	}
	t.Logf("%v after the put: new value on the node %t", time.Since(putAt).Round(time.Millisecond), failed == nil)
	// Read-only again; a failed remount is left to a later republish.
	var v nodeVolume
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 45*time.Second, true, func(context.Context) (bool, error) {
		vols, _ := nodeVolumes(t, []string{string(holder.UID)})
		v = vols[string(holder.UID)]
		return v.complete(), nil
	})
	if err != nil {
		t.Errorf("volume not read-only with ..data 45 s after the rotation while the pod holds a file of the old version open (%+v)", v)
	}
	for _, reason := range []string{"RotationFailed", "FailedMount"} {
		if e := podEvent(t, ns, "holder", reason); e != nil {
			t.Errorf("%s ×%d: %s", reason, e.Count, e.Message)
		}
	}
	checkFromContainer(t, holder, map[string]string{"cert": val(2)})
}

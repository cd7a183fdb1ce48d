// Package crash kills a real driver process at every step of a publish and
// an unpublish, with failpoints compiled in by the "failpoints" build tag,
// then starts a new driver process and retries as kubelet does: each case
// must end with the complete, read-only file set, and nothing left behind
// after unpublish. Run it with `go test -tags failpoints ./test/crash/` as
// root (`make unit` does).
package crash

// Package memcg writes a pod's secrets volume from a short-lived child
// process that has joined the pod's memory cgroup, so the volume's tmpfs pages
// are charged to the pod, as a "medium: Memory" emptyDir's are, and not to
// the driver.
//
// The kernel charges a shmem page to the memory cgroup of mm->owner of the
// process that first writes it, and the charge stays there until the page is
// freed: moving the writer afterwards, or writing from a thread, changes
// nothing. A driver that writes every pod's volume itself therefore pays for
// all of them and is the process the OOM killer picks. A child process costs
// a fork and exec of the driver binary per write (see BenchmarkWriter), and in
// exchange a pod's volume counts against the pod's own limit.
//
// # Wiring
//
// The child is the driver binary itself, started with ChildArg as its first
// argument. main must hand control to MaybeRunChild before it does anything
// else, flag parsing included:
//
//	func main() {
//		memcg.MaybeRunChild() // returns unless this process is a volume writer
//		...
//	}
//
// A test binary whose tests use a Writer with the default Exe does the same
// in TestMain, before m.Run.
//
// Package initialisers of every imported package still run in the child
// before main; they are part of the per-write cost.
package memcg

// Package failpoint lets tests stop the driver at a named step: kill the
// whole process group (as SIGKILL or the OOM killer would) or fail the step
// with an error. The points are compiled in only with the build tag
// "failpoints"; in every other build Inject is an empty function the compiler
// removes, so production binaries carry neither the code nor the environment
// variable it reads.
//
// A test arms points through $PODSECRETS_FAILPOINTS, inherited by every
// process the driver starts, as a comma-separated list of name=action, where
// action is "kill" or "error", optionally followed by "@n" to fire on the
// n-th time the point is reached (default the first), e.g.
// "mount/after-file=kill@2". In-process tests use Set.
package failpoint

// Env is the environment variable that arms failpoints in failpoints builds.
const Env = "PODSECRETS_FAILPOINTS"

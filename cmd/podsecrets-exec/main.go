// Command podsecrets-exec runs a command with the files of a mounted secrets
// volume in its environment (see package envexec). It ships in the driver's
// image as a small static binary that an init container installs into an
// emptyDir with --install; the app's container then runs
// podsecrets-exec --from /mnt/secrets -- app.
package main

import (
	"os"

	"github.com/podsecrets/podsecrets/envexec"
)

func main() {
	os.Exit(envexec.Command{Name: envexec.BinaryName, CanInstall: true, Stderr: os.Stderr}.Run(os.Args[1:]))
}

// Package mount puts a volume's files on a node: a size-limited tmpfs at the
// target path, a file set written and swapped atomically inside it, and the
// path checks that keep provider-chosen names inside the volume.
//
// It does not know about CSI or providers; the driver composes it.
package mount

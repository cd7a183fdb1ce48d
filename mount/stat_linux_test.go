package mount

import (
	"io/fs"
	"syscall"
)

func statGID(info fs.FileInfo) int64 { return int64(info.Sys().(*syscall.Stat_t).Gid) }

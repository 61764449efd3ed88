package noderun

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// growPipe asks for a 1 MiB pipe (the default is 64 KiB): a command that writes tens of MB then
// blocks, and switches to the reader, sixteen times less often. Refused (an unprivileged limit),
// the pipe stays as it was.
func growPipe(r io.Reader) {
	if f, ok := r.(*os.File); ok {
		_, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	}
}

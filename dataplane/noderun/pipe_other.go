//go:build !linux

package noderun

import "io"

func growPipe(io.Reader) {}

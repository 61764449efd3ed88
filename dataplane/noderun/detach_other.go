//go:build !unix

package noderun

import "syscall"

func detached() *syscall.SysProcAttr { return nil }

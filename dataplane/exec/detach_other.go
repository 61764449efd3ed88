//go:build !unix

package exec

import "syscall"

func detached() *syscall.SysProcAttr { return nil }

//go:build unix

package exec

import "syscall"

func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

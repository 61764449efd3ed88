//go:build !linux

package ipvsadm

import (
	"errors"

	"github.com/svctrace/svctrace/trace"
)

var errNotLinux = errors.New("IPVS lives in the Linux kernel: run svctrace on a Linux node")

// Services needs Linux.
func Services() ([]trace.IPVSService, error) { return nil, errNotLinux }

// DeleteServices needs Linux.
func DeleteServices([]trace.IPVSService) error { return errNotLinux }

// EnsureServices needs Linux.
func EnsureServices([]trace.IPVSService) error { return errNotLinux }

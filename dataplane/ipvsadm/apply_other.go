//go:build !linux

package ipvsadm

import (
	"errors"

	"github.com/svctrace/svctrace/trace"
)

// ApplyOp needs Linux.
func ApplyOp(trace.IPVSOp) (string, error) {
	return "", errors.New("IPVS can only be changed on a Linux node")
}

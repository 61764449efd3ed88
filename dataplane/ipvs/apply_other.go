//go:build !linux

package ipvs

import (
	"errors"

	"github.com/svctrace/svctrace/trace"
)

// Apply needs Linux.
func Apply(ops []trace.IPVSOp) ([]ApplyResult, error) {
	return nil, errors.New("IPVS can only be changed on a Linux node")
}

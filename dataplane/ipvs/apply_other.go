//go:build !linux

package ipvs

import (
	"errors"

	"github.com/svctrace/svctrace/trace"
)

// ApplyResult says what an IPVS operation did.
type ApplyResult struct {
	Op       trace.IPVSOp
	Done     bool
	Deferred string
}

// Apply needs Linux.
func Apply(ops []trace.IPVSOp) ([]ApplyResult, error) {
	return nil, errors.New("IPVS can only be changed on a Linux node")
}

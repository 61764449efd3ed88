package ipvs

import "github.com/svctrace/svctrace/trace"

// ApplyResult says what an IPVS operation did: a delete of a busy real server is left at
// weight 0 (Deferred) for a later run.
type ApplyResult struct {
	Op       trace.IPVSOp
	Done     bool
	Deferred string
}

package watch

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// ConditionType is the Node condition the svctrace agent keeps.
const ConditionType corev1.NodeConditionType = "ServiceDataplaneHealthy"

// The condition's reasons.
const (
	ReasonAgrees     = "DataplaneAgrees"
	ReasonStale      = "StaleDataplane"
	ReasonReadFailed = "DataplaneUnreadable"
)

// AgentState is what a Node's condition says about its dataplane.
type AgentState string

// The states: healthy (True and renewed within the max age), unhealthy (False or Unknown),
// silent (renewed longer ago: the agent stopped), absent (no agent ever reported).
const (
	AgentHealthy   AgentState = "healthy"
	AgentUnhealthy AgentState = "unhealthy"
	AgentSilent    AgentState = "silent"
	AgentAbsent    AgentState = "absent"
)

// StateOf reads the agent's condition off a Node at now; a heartbeat older than maxAge is silent.
func StateOf(n *corev1.Node, now time.Time, maxAge time.Duration) AgentState {
	for _, c := range n.Status.Conditions {
		if c.Type != ConditionType {
			continue
		}
		switch {
		case now.Sub(c.LastHeartbeatTime.Time) > maxAge:
			return AgentSilent
		case c.Status == corev1.ConditionTrue:
			return AgentHealthy
		default:
			return AgentUnhealthy
		}
	}
	return AgentAbsent
}

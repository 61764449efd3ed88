package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"

	"github.com/svctrace/svctrace/trace"
)

// ReportingController is the Events' reportingController.
const ReportingController = "svctrace.io/agent"

// maxEventsPerCheck bounds the Events one check emits (a node gone stale for 10,000 Services
// must not flood the API server); the rest are counted in one more Event on the Node.
const maxEventsPerCheck = 20

// reporter writes Events and the Node condition.
type reporter struct {
	client    kubernetes.Interface
	node      string
	heartbeat time.Duration
	recorder  events.EventRecorder
	broad     events.EventBroadcaster
	sent      int // Events this check
	dropped   int

	written   *corev1.NodeCondition
	writtenAt time.Time
	// failed hears of a condition write that failed (counted and logged by the agent).
	failed func(error)
}

func newReporter(client kubernetes.Interface, node string, heartbeat time.Duration) *reporter {
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: client.EventsV1()})
	return &reporter{client: client, node: node, heartbeat: heartbeat, broad: b,
		recorder: b.NewRecorder(scheme.Scheme, ReportingController)}
}

// start sends Events until ctx ends.
func (r *reporter) start(ctx context.Context) {
	r.broad.StartRecordingToSink(ctx.Done())
}

// event reports a warning or error finding that appeared (a Warning) or cleared (Normal) on its
// Service, or on the Node when the Service is gone.
func (r *reporter) event(svc *corev1.Service, node *corev1.Node, f trace.Finding, appeared bool) {
	if f.Severity == trace.SeverityInfo {
		return // the metrics carry them; an Event is for what needs a look
	}
	if r.sent >= maxEventsPerCheck {
		r.dropped++
		return
	}
	r.sent++
	var regarding, related runtime.Object
	if svc != nil {
		regarding = svc
		if node != nil {
			related = node
		}
	} else if node != nil {
		regarding = node
	} else {
		return
	}
	if appeared {
		r.recorder.Eventf(regarding, related, corev1.EventTypeWarning, f.Kind, "Check", "on node %s: %s", r.node, truncate(f.Message, 900))
		return
	}
	r.recorder.Eventf(regarding, related, corev1.EventTypeNormal, "Cleared"+f.Kind, "Check", "on node %s the dataplane agrees with the API again (%s %s)", r.node, f.Kind, f.Service)
}

// endCheck reports Events left out by the cap, once per check.
func (r *reporter) endCheck(node *corev1.Node) {
	if r.dropped > 0 && node != nil {
		r.recorder.Eventf(node, nil, corev1.EventTypeWarning, "TooManyFindings", "Check", "%d more findings changed on this node; see kubectl svctrace check --node %s", r.dropped, r.node)
	}
	r.sent, r.dropped = 0, 0
}

// condition writes the Node condition when it changes, and at least every heartbeat; a status
// change is also an Event on the Node.
func (r *reporter) condition(ctx context.Context, status corev1.ConditionStatus, reason, message string, node *corev1.Node) {
	defer r.endCheck(node)
	same := r.written != nil && r.written.Status == status && r.written.Reason == reason && r.written.Message == message
	if same && time.Since(r.writtenAt) < r.heartbeat {
		return
	}
	cond, err := WriteCondition(ctx, r.client, r.node, node, status, reason, message)
	if err != nil {
		if r.failed != nil {
			r.failed(err)
		}
		return // the next check tries again (written stays as it was)
	}
	var previous *corev1.NodeCondition
	if node != nil {
		for i := range node.Status.Conditions {
			if node.Status.Conditions[i].Type == ConditionType {
				previous = &node.Status.Conditions[i]
			}
		}
	}
	if (previous == nil || previous.Status != status) && node != nil {
		kind := corev1.EventTypeNormal
		if status != corev1.ConditionTrue {
			kind = corev1.EventTypeWarning
		}
		r.recorder.Eventf(node, nil, kind, reason, "Check", "%s", truncate(message, 900))
	}
	r.written, r.writtenAt = cond, time.Now()
}

// WriteCondition sets the agent's condition on the Node by a strategic-merge patch of its status
// (the other conditions stay), renewing its heartbeat; the transition time is kept while the
// status stays what current (the Node as last seen, may be nil) had.
func WriteCondition(ctx context.Context, client kubernetes.Interface, name string, current *corev1.Node, status corev1.ConditionStatus, reason, message string) (*corev1.NodeCondition, error) {
	now := metav1.Now()
	cond := corev1.NodeCondition{Type: ConditionType, Status: status, Reason: reason, Message: truncate(message, 1000), LastHeartbeatTime: now, LastTransitionTime: now}
	if current != nil {
		for _, c := range current.Status.Conditions {
			if c.Type == ConditionType && c.Status == status {
				cond.LastTransitionTime = c.LastTransitionTime
			}
		}
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{cond}}})
	if err != nil {
		return nil, err
	}
	if _, err := client.CoreV1().Nodes().PatchStatus(ctx, name, patch); err != nil {
		return nil, err
	}
	return &cond, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s…", s[:n])
}

package agent

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/trace"
)

// TestAgentLoop runs the agent against a fake API server holding the recorded demo node's
// objects and the recorded dataplane (which does not change: kube-proxy "stopped"). An
// EndpointSlice that loses hostnames-c makes its rule stale: after the grace period the
// condition turns False and a Warning Event names it; the slice restored, both clear.
func TestAgentLoop(t *testing.T) {
	dp, cl := recorded.IPTables(t, filepath.Join(recorded.Root(), "dataplane/snapshot/demo"))
	var objs []runtime.Object
	for _, s := range cl.Services {
		objs = append(objs, s)
	}
	for _, s := range cl.Slices {
		objs = append(objs, s)
	}
	for _, p := range cl.Pods {
		objs = append(objs, p)
	}
	for _, n := range cl.Nodes {
		objs = append(objs, n)
	}
	client := fake.NewClientset(objs...)
	var readsMu sync.Mutex
	var reads []bool // the scoped argument of every read
	a := New(Config{Node: "node1", Grace: 300 * time.Millisecond, Interval: time.Hour, Batch: 20 * time.Millisecond, Heartbeat: time.Hour,
		Read: func(_ context.Context, scoped bool) (trace.Dataplane, error) {
			readsMu.Lock()
			reads = append(reads, scoped)
			readsMu.Unlock()
			return dp, nil
		}}, client, NewMetrics("node1"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	condition := func() *corev1.NodeCondition {
		n, err := client.CoreV1().Nodes().Get(ctx, "node1", metav1.GetOptions{})
		if err != nil {
			return nil
		}
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == ConditionType {
				return &n.Status.Conditions[i]
			}
		}
		return nil
	}
	events := func(reason string) string {
		list, _ := client.EventsV1().Events("default").List(ctx, metav1.ListOptions{})
		var out []string
		for _, e := range list.Items {
			if e.Reason == reason {
				out = append(out, e.Regarding.Kind+"/"+e.Regarding.Name+": "+e.Note)
			}
		}
		return strings.Join(out, "\n")
	}
	wait := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			if ctx.Err() != nil {
				t.Fatalf("%s: timed out; condition %+v", what, condition())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("ready with the condition True", func() bool {
		c := condition()
		return a.Ready() && c != nil && c.Status == corev1.ConditionTrue && c.Reason == "DataplaneAgrees"
	})
	if e := events("NoEndpoints"); e != "" {
		t.Errorf("info findings made Events: %s", e)
	}

	// hostnames-c leaves the Service's EndpointSlice; the node keeps DNAT'ing to it.
	slice := hostnamesSlice(t, cl)
	edited := slice.DeepCopy()
	edited.ResourceVersion = "" // the fake API server keeps what it is given; a real one moves it on every write
	edited.Endpoints = nil
	for _, e := range slice.Endpoints {
		if e.Addresses[0] != "10.244.1.13" {
			edited.Endpoints = append(edited.Endpoints, e)
		}
	}
	changed := time.Now()
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, edited, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("the stale endpoint reported", func() bool {
		c := condition()
		return c != nil && c.Status == corev1.ConditionFalse && strings.Contains(c.Message, "StaleEndpoint default/hostnames:default") &&
			strings.Contains(events("StaleEndpoint"), "Service/hostnames")
	})
	if d := time.Since(changed); d < 300*time.Millisecond {
		t.Errorf("reported %s after the change, before the grace period ended", d)
	}
	if e := events("StaleEndpoint"); !strings.Contains(e, "10.244.1.13:9376") {
		t.Errorf("the Event does not name the stale endpoint: %s", e)
	}
	if e := events(""); e != "" {
		t.Errorf("an Event without a reason: %s", e)
	}

	// The API goes back to what the node has: cleared, with no API change needed after that.
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("cleared", func() bool {
		c := condition()
		return c != nil && c.Status == corev1.ConditionTrue && strings.Contains(events("ClearedStaleEndpoint"), "Service/hostnames")
	})
	readsMu.Lock()
	if len(reads) < 2 || reads[0] || !slices.Contains(reads[1:], true) {
		t.Errorf("reads (scoped?) %v: want the whole node first, then scoped reads for the changed Service", reads)
	}
	readsMu.Unlock()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func hostnamesSlice(t *testing.T, cl *trace.Cluster) *discoveryv1.EndpointSlice {
	t.Helper()
	for _, s := range cl.Slices {
		if s.Namespace == "default" && s.Labels[discoveryv1.LabelServiceName] == "hostnames" {
			return s
		}
	}
	t.Fatal("the recorded objects have no EndpointSlice of default/hostnames")
	return nil
}

// TestConditionMessage: the condition names the first findings, errors only, and says when
// there are more.
func TestConditionMessage(t *testing.T) {
	var active []trace.Finding
	for _, s := range []string{"a", "b", "c", "d", "e", "f"} {
		active = append(active, trace.Finding{Kind: trace.StaleEndpoint, Severity: trace.SeverityError, Service: "ns/" + s + ":http"})
	}
	active = append(active, trace.Finding{Kind: trace.LocalPolicyBlackhole, Severity: trace.SeverityWarning, Service: "ns/w:http"})
	status, reason, msg := conditionFor(active, 10, true)
	if status != corev1.ConditionFalse || reason != "StaleDataplane" || !strings.HasPrefix(msg, "6 stale or missing: StaleEndpoint ns/a:http") || !strings.Contains(msg, ", …") || strings.Contains(msg, "ns/w") {
		t.Errorf("%s %s %q", status, reason, msg)
	}
	if status, _, msg := conditionFor(active[6:], 10, true); status != corev1.ConditionTrue || !strings.Contains(msg, "10 Service ports checked") {
		t.Errorf("warnings only: %s %q", status, msg)
	}
}

// TestConditionWriteFailure: a Node condition the API server refuses is counted and logged (it
// was dropped silently before), and the agent keeps checking.
func TestConditionWriteFailure(t *testing.T) {
	dp, cl := recorded.IPTables(t, filepath.Join(recorded.Root(), "dataplane/snapshot/demo"))
	var objs []runtime.Object
	for _, n := range cl.Nodes {
		objs = append(objs, n)
	}
	client := fake.NewClientset(objs...)
	client.PrependReactor("patch", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("nodes \"node1\" is forbidden")
	})
	var log syncBuffer
	m := NewMetrics("node1")
	a := New(Config{Node: "node1", Grace: time.Millisecond, Interval: 50 * time.Millisecond, Batch: 10 * time.Millisecond, Heartbeat: time.Hour, Log: &log,
		Read: func(context.Context, bool) (trace.Dataplane, error) { return dp, nil }}, client, m)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for testutil.ToFloat64(m.conditionErrors) < 2 {
		if ctx.Err() != nil {
			t.Fatalf("no failed condition write counted; log:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if !strings.Contains(log.String(), "writing the Node condition failed (the next check tries again): nodes \"node1\" is forbidden") {
		t.Errorf("the failure is not logged:\n%s", log.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the agent's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A whole-node check that takes long (a node with 10,000 Services) spaces the next one out, so
// that whole-node checks take at most a fortieth of the time.
func TestWholeNodeChecksSpaceOut(t *testing.T) {
	var log bytes.Buffer
	a := &Agent{cfg: Config{Interval: time.Minute, Log: &log}}
	for _, c := range []struct{ took, want time.Duration }{{time.Second, time.Minute}, {1500 * time.Millisecond, time.Minute}, {9 * time.Second, 360 * time.Second}} {
		a.fullTook = c.took
		if got := a.every(); got != c.want {
			t.Errorf("after a check of %s: next in %s, want %s", c.took, got, c.want)
		}
	}
	if !strings.Contains(log.String(), "the next one in 6m0s") {
		t.Errorf("log %q", log.String())
	}
}

// An update that is the same object again (a relist re-delivers every object) is no change; one
// with a new resource version is.
func TestRelistIsNoChange(t *testing.T) {
	var got []string
	h := handler(func(obj any) { got = append(got, obj.(*discoveryv1.EndpointSlice).ResourceVersion) })
	s1 := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "a", ResourceVersion: "1"}}
	s2 := s1.DeepCopy()
	s2.ResourceVersion = "2"
	h.OnUpdate(s1, s1.DeepCopy())
	h.OnUpdate(s1, s2)
	if len(got) != 1 || got[0] != "2" {
		t.Errorf("changes seen %v, want only resource version 2", got)
	}
}

// Package agent is `svctrace agent`: it runs on every node (a DaemonSet with host networking),
// watches the API with informers, reads its node's dataplane with the same readers and engine as
// `check`, and reports what stays wrong past a grace period three ways: Prometheus metrics, Events
// on the Service and the Node, and a Node condition.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/watch"
)

// ConditionType is the Node condition the agent keeps.
const ConditionType = watch.ConditionType

// Config is how an agent runs.
type Config struct {
	Node string
	// Grace is how long a finding must last before it is reported (kube-proxy's sync delay).
	Grace time.Duration
	// Interval is the period of the whole-node check; Batch the least time between two checks
	// of changed Services; Heartbeat how often the Node condition is renewed when nothing changed.
	Interval, Batch, Heartbeat time.Duration
	// Read reads the node's dataplane (dataplane.Read on the node); scoped says the check is of
	// a few Services (in nftables mode only what their packets touch is read).
	Read func(ctx context.Context, scoped bool) (trace.Dataplane, error)
	Log  io.Writer
}

// Agent is one running agent.
type Agent struct {
	cfg     Config
	client  kubernetes.Interface
	metrics *Metrics
	report  *reporter

	svcs   cache.Indexer
	slices cache.Indexer
	pods   cache.Indexer
	nodes  cache.Indexer

	mu      sync.Mutex
	dirty   map[string]bool // Services changed since the last check
	tracker *watch.Tracker
	wake    chan struct{}
	ready   bool
	lastRun time.Time
	// fullTook is how long the last whole-node check took.
	fullTook time.Duration
}

// New builds an agent; Run starts it.
func New(cfg Config, client kubernetes.Interface, m *Metrics) *Agent {
	a := &Agent{cfg: cfg, client: client, metrics: m, dirty: map[string]bool{}, tracker: watch.NewTracker(cfg.Grace), wake: make(chan struct{}, 1),
		report: newReporter(client, cfg.Node, cfg.Heartbeat)}
	a.report.failed = func(err error) {
		m.conditionErrors.Inc()
		a.logf("writing the Node condition failed (the next check tries again): %v", err)
	}
	return a
}

func (a *Agent) logf(format string, args ...any) {
	if a.cfg.Log != nil {
		fmt.Fprintf(a.cfg.Log, "%s "+format+"\n", append([]any{time.Now().UTC().Format(time.RFC3339)}, args...)...)
	}
}

// stripManaged drops what the agent never reads, to keep the caches small on large clusters.
func stripManaged(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		if ann := m.GetAnnotations(); len(ann) > 0 {
			m.SetAnnotations(nil)
		}
	}
	return obj, nil
}

// Run watches and checks until ctx ends. It returns an error only when the caches cannot start.
func (a *Agent) Run(ctx context.Context) error {
	a.report.start(ctx)
	all := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithTransform(stripManaged))
	// Only this node's pods and Node: on a 5,000-node cluster that is what cuts the traffic.
	own := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithTransform(stripManaged),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.Node).String()
		}))
	self := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithTransform(stripManaged),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", a.cfg.Node).String()
		}))
	svcInf := all.Core().V1().Services().Informer()
	sliceInf := all.Discovery().V1().EndpointSlices().Informer()
	podInf := own.Core().V1().Pods().Informer()
	nodeInf := self.Core().V1().Nodes().Informer()
	// EndpointSlices by their Service: a check of a few Services builds its model from theirs.
	if err := sliceInf.AddIndexers(cache.Indexers{byService: func(obj any) ([]string, error) {
		if m, ok := objectMeta(obj); ok {
			if svc := m.GetLabels()[discoveryv1.LabelServiceName]; svc != "" {
				return []string{m.GetNamespace() + "/" + svc}, nil
			}
		}
		return nil, nil
	}}); err != nil {
		return err
	}
	a.svcs, a.slices, a.pods, a.nodes = svcInf.GetIndexer(), sliceInf.GetIndexer(), podInf.GetIndexer(), nodeInf.GetIndexer()
	onService := func(obj any) {
		if m, ok := objectMeta(obj); ok {
			a.changed(m.GetNamespace()+"/"+m.GetName(), false)
		}
	}
	onSlice := func(obj any) {
		if m, ok := objectMeta(obj); ok {
			if svc := m.GetLabels()[discoveryv1.LabelServiceName]; svc != "" {
				a.changed(m.GetNamespace()+"/"+svc, true)
			}
		}
	}
	if _, err := svcInf.AddEventHandler(handler(onService)); err != nil {
		return err
	}
	if _, err := sliceInf.AddEventHandler(handler(onSlice)); err != nil {
		return err
	}
	all.Start(ctx.Done())
	own.Start(ctx.Done())
	self.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.HasSynced, sliceInf.HasSynced, podInf.HasSynced, nodeInf.HasSynced) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errors.New("the informer caches did not sync")
	}
	a.mu.Lock()
	a.dirty = map[string]bool{} // the initial list is covered by the first full check
	a.tracker.Forget()          // and is no change for the programming latency
	a.mu.Unlock()
	a.logf("caches synced for node %s; checking every %s, changes after %s, grace %s", a.cfg.Node, a.cfg.Interval, a.cfg.Batch, a.cfg.Grace)

	var due <-chan time.Time
	var dueTimer *time.Timer
	dueServices := a.schedule(a.fullCheck(ctx), &dueTimer, &due)
	full := time.NewTimer(a.every())
	defer full.Stop()
	lastBatch := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-full.C:
			dueServices = a.schedule(a.fullCheck(ctx), &dueTimer, &due)
			full.Reset(a.every())
		case <-due:
			due = nil
			dueServices = a.schedule(a.check(ctx, scopeOf(dueServices)), &dueTimer, &due)
		case <-a.wake:
			// Batched: at most one check of changed Services per Batch.
			if wait := a.cfg.Batch - time.Since(lastBatch); wait > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(wait):
				}
			}
			lastBatch = time.Now()
			a.mu.Lock()
			changed := a.dirty
			a.dirty = map[string]bool{}
			a.mu.Unlock()
			if len(changed) == 0 {
				continue
			}
			for s := range dueServices {
				changed[s] = true
			}
			dueServices = a.schedule(a.check(ctx, scopeOf(changed)), &dueTimer, &due)
		}
	}
}

// fullCheck checks the whole node and times it.
func (a *Agent) fullCheck(ctx context.Context) *watch.Update {
	start := time.Now()
	u := a.check(ctx, watch.Scope{All: true})
	a.mu.Lock()
	a.fullTook = time.Since(start)
	a.mu.Unlock()
	return u
}

// FullCheckSpacing is how many times its own duration a whole-node check is at least apart from
// the next: whole-node checks take at most a fortieth of the time (on a node with 10,000 Services
// one takes seconds; changed Services are checked as they change in between).
const FullCheckSpacing = 40

// every is the time to the next whole-node check: --interval, or FullCheckSpacing times what the
// last one took when that is longer.
func (a *Agent) every() time.Duration {
	a.mu.Lock()
	took := a.fullTook
	a.mu.Unlock()
	if d := FullCheckSpacing * took; d > a.cfg.Interval {
		a.logf("the whole-node check took %s: the next one in %s, not --interval %s", took.Round(time.Millisecond), d.Round(time.Second), a.cfg.Interval)
		return d
	}
	return a.cfg.Interval
}

// schedule arms the timer for the next re-check: when a pending finding's grace ends, and while
// findings are reported, every grace period (so that they clear soon after kube-proxy catches
// up, with no API change to trigger a check). It returns the Services to check then.
func (a *Agent) schedule(u *watch.Update, t **time.Timer, c *<-chan time.Time) map[string]bool {
	if *t != nil {
		(*t).Stop()
		*c = nil
	}
	if u == nil {
		return nil
	}
	next, services := u.NextDue, map[string]bool{}
	for s := range u.DueServices {
		services[s] = true
	}
	a.mu.Lock()
	active := a.tracker.Active()
	a.mu.Unlock()
	if len(active) > 0 {
		if again := time.Now().Add(a.cfg.Grace); next.IsZero() || again.Before(next) {
			next = again
		}
		for _, f := range active {
			services[watch.ServiceOf(f)] = true
		}
	}
	if next.IsZero() {
		return nil
	}
	d := time.Until(next) + 10*time.Millisecond
	if d < 0 {
		d = 0
	}
	*t = time.NewTimer(d)
	*c = (*t).C
	return services
}

// scopeOf checks the Services, or the whole node when there are many (one read either way; a
// whole-node check costs less than thousands of scoped ones) or one is a node-wide finding's.
func scopeOf(services map[string]bool) watch.Scope {
	if services[""] || len(services) > 50 {
		return watch.Scope{All: true}
	}
	return watch.Scope{Services: services}
}

func handler(f func(any)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: f,
		UpdateFunc: func(old, obj any) {
			// A relist delivers every object again as an update of itself: no change.
			if o, ok := objectMeta(old); ok {
				if n, ok := objectMeta(obj); ok && o.GetResourceVersion() != "" && o.GetResourceVersion() == n.GetResourceVersion() {
					return
				}
			}
			f(obj)
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			f(obj)
		},
	}
}

func objectMeta(obj any) (metav1.Object, bool) {
	m, ok := obj.(metav1.Object)
	return m, ok
}

// changed marks a Service for the next batched check.
func (a *Agent) changed(svc string, endpoints bool) {
	a.mu.Lock()
	a.dirty[svc] = true
	if endpoints {
		a.tracker.Changed(svc, time.Now())
	}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// byService indexes EndpointSlices by "namespace/service".
const byService = "service"

// cluster is the informers' view as check's model: everything, or for a check of a few Services
// only those and their EndpointSlices (building the model of 10,000 Services for one is what a
// check of one would spend its time on).
func (a *Agent) cluster(scope watch.Scope) *trace.Cluster {
	var svcs []*corev1.Service
	var slices []*discoveryv1.EndpointSlice
	if scope.All {
		for _, o := range a.svcs.List() {
			svcs = append(svcs, o.(*corev1.Service))
		}
		for _, o := range a.slices.List() {
			slices = append(slices, o.(*discoveryv1.EndpointSlice))
		}
	} else {
		for _, key := range sortedKeys(scope.Services) {
			if o, ok, _ := a.svcs.GetByKey(key); ok {
				svcs = append(svcs, o.(*corev1.Service))
			}
			objs, _ := a.slices.ByIndex(byService, key)
			for _, o := range objs {
				slices = append(slices, o.(*discoveryv1.EndpointSlice))
			}
		}
	}
	var pods []*corev1.Pod
	for _, o := range a.pods.List() {
		pods = append(pods, o.(*corev1.Pod))
	}
	var nodes []*corev1.Node
	for _, o := range a.nodes.List() {
		nodes = append(nodes, o.(*corev1.Node))
	}
	return trace.NewCluster(svcs, slices, pods, nodes)
}

// check reads the node once and checks scope; it reports what changed.
func (a *Agent) check(ctx context.Context, scope watch.Scope) *watch.Update {
	kind := "node"
	if !scope.All {
		kind = "service"
	}
	start := time.Now()
	dp, err := a.cfg.Read(ctx, !scope.All)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		a.metrics.readErrors.Inc()
		a.metrics.checks.WithLabelValues(kind, "error").Inc()
		a.logf("reading the dataplane failed: %v", err)
		a.report.condition(ctx, corev1.ConditionUnknown, watch.ReasonReadFailed, "svctrace could not read this node's dataplane: "+err.Error(), a.nodeObject())
		return nil
	}
	cl := a.cluster(scope)
	node := cl.NodeContextFor(a.cfg.Node, nil)
	var findings []trace.Finding
	checked := 0
	scopes := []trace.CheckScope{{}}
	if !scope.All {
		scopes = scopes[:0]
		for _, s := range sortedKeys(scope.Services) {
			ns, name, _ := strings.Cut(s, "/")
			scopes = append(scopes, trace.CheckScope{Namespace: ns, Name: name})
		}
	}
	for _, s := range scopes {
		res, err := trace.Check(ctx, dp, cl, node, s)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.metrics.checks.WithLabelValues(kind, "error").Inc()
			a.logf("check failed: %v", err)
			return nil
		}
		findings = append(findings, res.Findings...)
		checked += res.Checked
	}
	a.metrics.checks.WithLabelValues(kind, "success").Inc()
	a.metrics.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	a.metrics.lastSuccess.SetToCurrentTime()

	a.mu.Lock()
	u := a.tracker.Observe(time.Now(), scope, findings)
	active := a.tracker.Active()
	a.ready, a.lastRun = true, time.Now()
	a.mu.Unlock()
	for _, l := range u.Latencies {
		a.metrics.latency.Observe(l.Seconds())
	}
	a.metrics.setFindings(active)
	nodeObj := a.nodeObject()
	for _, f := range u.Appeared {
		if f.Severity != trace.SeverityInfo {
			a.logf("finding: %s %s: %s", f.Kind, f.Service, f.Message)
		}
		a.report.event(a.serviceObject(f), nodeObj, f, true)
	}
	for _, f := range u.Cleared {
		if f.Severity != trace.SeverityInfo {
			a.logf("cleared: %s %s", f.Kind, f.Service)
		}
		a.report.event(a.serviceObject(f), nodeObj, f, false)
	}
	status, reason, msg := conditionFor(active, checked, scope.All)
	a.report.condition(ctx, status, reason, msg, nodeObj)
	return &u
}

// conditionFor summarises the reported findings (warnings and errors) in the condition.
func conditionFor(active []trace.Finding, checked int, full bool) (corev1.ConditionStatus, string, string) {
	var bad []string
	for _, f := range active {
		if f.Severity == trace.SeverityError {
			bad = append(bad, f.Kind+" "+f.Service)
		}
	}
	if len(bad) == 0 {
		msg := "kube-proxy's rules on this node agree with the API"
		if full {
			msg += fmt.Sprintf(" (%d Service ports checked)", checked)
		}
		return corev1.ConditionTrue, watch.ReasonAgrees, msg
	}
	msg := fmt.Sprintf("%d stale or missing: %s", len(bad), strings.Join(bad[:min(len(bad), 5)], ", "))
	if len(bad) > 5 {
		msg += ", …"
	}
	return corev1.ConditionFalse, watch.ReasonStale, msg + "; see kubectl svctrace check"
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// nodeObject is this node's Node from the cache (nil before it exists).
func (a *Agent) nodeObject() *corev1.Node {
	if o, ok, _ := a.nodes.GetByKey(a.cfg.Node); ok {
		return o.(*corev1.Node)
	}
	return nil
}

// serviceObject is the finding's Service from the cache (nil when deleted).
func (a *Agent) serviceObject(f trace.Finding) *corev1.Service {
	svc := watch.ServiceOf(f)
	if svc == "" {
		return nil
	}
	if o, ok, _ := a.svcs.GetByKey(svc); ok {
		return o.(*corev1.Service)
	}
	return nil
}

// Ready reports whether the caches synced and a check succeeded; Live whether the loop checked
// within three intervals.
func (a *Agent) Ready() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ready
}

// Live reports whether the last successful check is recent.
func (a *Agent) Live() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.ready || time.Since(a.lastRun) < 3*max(a.cfg.Interval, FullCheckSpacing*a.fullTook)+time.Minute
}

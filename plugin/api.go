package plugin

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

	"github.com/svctrace/svctrace/trace"
)

// apiClient is the client of the kubeconfig's cluster, once the user's permissions are checked.
func apiClient(ctx context.Context, cfg *genericclioptions.ConfigFlags) (kubernetes.Interface, error) {
	rc, err := cfg.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	rc.Timeout = 30 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	if err := checkAccess(ctx, cs); err != nil {
		return nil, err
	}
	return cs, nil
}

// fetchService reads with cs (apiClient's) what a repair of one Service on one node needs: the Service (none when the
// API no longer has it), its EndpointSlices, the Node (every Node when there is none of that name,
// for finding this machine by its addresses) and the pods on the node. On a node with 10,000
// Services that is a few objects where fetchCluster reads over 20,000.
func fetchService(ctx context.Context, cs kubernetes.Interface, scope trace.CheckScope, node string) (*trace.Cluster, error) {
	var svcs []*corev1.Service
	svc, err := cs.CoreV1().Services(scope.Namespace).Get(ctx, scope.Name, metav1.GetOptions{})
	switch {
	case err == nil:
		svcs = append(svcs, svc)
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("get service %s/%s: %w", scope.Namespace, scope.Name, err)
	}
	// From the API server's cache (resourceVersion 0), as kube-proxy's informers see them: a
	// consistent list waits for that cache to catch up with etcd first, 0.1-0.2 s with 10,000
	// EndpointSlices in the namespace, where this takes 0.02 s.
	slices, err := cs.DiscoveryV1().EndpointSlices(scope.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + scope.Name, ResourceVersion: "0"})
	if err != nil {
		return nil, fmt.Errorf("list endpointslices of %s/%s: %w", scope.Namespace, scope.Name, err)
	}
	var nodes []*corev1.Node
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	switch {
	case err == nil:
		nodes = append(nodes, n)
	case apierrors.IsNotFound(err):
		all, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		nodes = ptrs(all.Items)
	default:
		return nil, fmt.Errorf("get node %s: %w", node, err)
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: nodeSelector(node), ResourceVersion: "0"})
	if err != nil {
		return nil, fmt.Errorf("list pods on %s: %w", node, err)
	}
	return trace.NewCluster(svcs, ptrs(slices.Items), ptrs(pods.Items), nodes), nil
}

// fetchCluster lists what a trace joins with: Services, EndpointSlices, Nodes and Pods.
func fetchCluster(ctx context.Context, cfg *genericclioptions.ConfigFlags) (*trace.Cluster, error) {
	cs, err := apiClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// The four lists are asked side by side (on a 10,000-Service cluster each is a large answer).
	var svcs *corev1.ServiceList
	var eps *discoveryv1.EndpointSliceList
	var nodes *corev1.NodeList
	var pods *corev1.PodList
	errs := make([]error, 4)
	var wg sync.WaitGroup
	wg.Add(4)
	go func() {
		defer wg.Done()
		if svcs, errs[0] = cs.CoreV1().Services("").List(ctx, metav1.ListOptions{}); errs[0] != nil {
			errs[0] = fmt.Errorf("list services: %w", errs[0])
		}
	}()
	go func() {
		defer wg.Done()
		if eps, errs[1] = cs.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{}); errs[1] != nil {
			errs[1] = fmt.Errorf("list endpointslices: %w", errs[1])
		}
	}()
	go func() {
		defer wg.Done()
		if nodes, errs[2] = cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); errs[2] != nil {
			errs[2] = fmt.Errorf("list nodes: %w", errs[2])
		}
	}()
	go func() {
		defer wg.Done()
		if pods, errs[3] = cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{ResourceVersion: "0"}); errs[3] != nil {
			errs[3] = fmt.Errorf("list pods: %w", errs[3])
		}
	}()
	wg.Wait()
	for _, err := range errs { // the first in the former order
		if err != nil {
			return nil, err
		}
	}
	return trace.NewCluster(ptrs[corev1.Service](svcs.Items), ptrs[discoveryv1.EndpointSlice](eps.Items),
		ptrs[corev1.Pod](pods.Items), ptrs[corev1.Node](nodes.Items)), nil
}

func ptrs[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

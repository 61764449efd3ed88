package plugin

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

	dpexec "github.com/svctrace/svctrace/dataplane/exec"
)

// kubeProxyLabel selects kube-proxy's pods (kubeadm and most distributions).
const kubeProxyLabel = "k8s-app=kube-proxy"

// kubeProxyPod finds the kube-proxy pod on the node and returns a Runner that execs in it,
// after checking that the user may.
func kubeProxyPod(ctx context.Context, cfg *genericclioptions.ConfigFlags, node string) (dpexec.Runner, error) {
	pods, err := kubeProxyPods(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if p, ok := pods[node]; ok {
		return p, nil
	}
	return nil, &noKubeProxyError{node: node}
}

// kubeProxyPods lists the running kube-proxy pods, one list call for the whole cluster, by node,
// each a Runner that execs in it, after checking the user may exec in their namespaces.
func kubeProxyPods(ctx context.Context, cfg *genericclioptions.ConfigFlags) (map[string]dpexec.Pod, error) {
	rc, err := cfg.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	rc.Timeout = 0 // exec streams; the context bounds it
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pods, err := cs.CoreV1().Pods("").List(lctx, metav1.ListOptions{LabelSelector: kubeProxyLabel})
	if err != nil {
		return nil, fmt.Errorf("finding kube-proxy pods: %w", err)
	}
	out := map[string]dpexec.Pod{}
	checked := map[string]bool{}
	for _, p := range pods.Items {
		if p.Status.Phase != "Running" || len(p.Spec.Containers) == 0 || p.Spec.NodeName == "" {
			continue
		}
		if !checked[p.Namespace] {
			if err := checkExec(lctx, cs, p.Namespace); err != nil {
				return nil, err
			}
			checked[p.Namespace] = true
		}
		out[p.Spec.NodeName] = dpexec.Pod{Client: cs, Config: rc, Namespace: p.Namespace, Name: p.Name, Container: p.Spec.Containers[0].Name}
	}
	return out, nil
}

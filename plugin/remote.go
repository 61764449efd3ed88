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
	pods, err := cs.CoreV1().Pods("").List(lctx, metav1.ListOptions{LabelSelector: kubeProxyLabel, FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return nil, fmt.Errorf("finding kube-proxy on node %s: %w", node, err)
	}
	for _, p := range pods.Items {
		if p.Status.Phase != "Running" || len(p.Spec.Containers) == 0 {
			continue
		}
		if err := checkExec(lctx, cs, p.Namespace); err != nil {
			return nil, err
		}
		return dpexec.Pod{Client: cs, Config: rc, Namespace: p.Namespace, Name: p.Name, Container: p.Spec.Containers[0].Name}, nil
	}
	if _, err := cs.CoreV1().Nodes().Get(lctx, node, metav1.GetOptions{}); err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	return nil, fmt.Errorf("no running kube-proxy pod (label %s) on node %s: if kube-proxy is replaced there (e.g. Cilium's kube-proxy replacement), svctrace has no kube-proxy rules to read; use that dataplane's own tools (cilium service list)", kubeProxyLabel, node)
}

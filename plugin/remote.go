package plugin

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

	"github.com/svctrace/svctrace/dataplane/noderun"
)

// kubeProxyLabel selects kube-proxy's pods (kubeadm and most distributions).
const kubeProxyLabel = "k8s-app=kube-proxy"

// kubeProxyPod finds the kube-proxy pod on the node and returns a Runner that execs in it,
// after checking that the user may.
func kubeProxyPod(ctx context.Context, cfg *genericclioptions.ConfigFlags, namespace, node string) (noderun.Runner, error) {
	pods, err := kubeProxyPods(ctx, cfg, namespace, node)
	if err != nil {
		return nil, err
	}
	if p, ok := pods[node]; ok {
		return p, nil
	}
	return nil, &noKubeProxyError{node: node}
}

// kubeProxyPods lists the running kube-proxy pods, one list call for the whole cluster (or, with
// node set, for that node alone: a large cluster's list is megabytes), by node, each a Runner
// that execs in it, after checking the user may exec in their namespace. Only pods
// in kube-proxy's namespace that a DaemonSet runs (or static mirror pods) count: what svctrace
// reads from them is trusted as the node's rules, so a pod that only carries the label, in a
// namespace a tenant controls, must not be exec'd into.
func kubeProxyPods(ctx context.Context, cfg *genericclioptions.ConfigFlags, namespace, node string) (map[string]noderun.Pod, error) {
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
	list := metav1.ListOptions{LabelSelector: kubeProxyLabel}
	if node != "" {
		list.FieldSelector = nodeSelector(node)
	}
	pods, err := cs.CoreV1().Pods(namespace).List(lctx, list)
	if err != nil {
		return nil, fmt.Errorf("finding kube-proxy pods in namespace %s: %w", namespace, err)
	}
	picked, err := pickKubeProxyPods(pods.Items)
	if err != nil {
		return nil, err
	}
	out := map[string]noderun.Pod{}
	if len(picked) > 0 {
		if err := checkExec(lctx, cs, namespace); err != nil {
			return nil, err
		}
	}
	for node, p := range picked {
		out[node] = noderun.Pod{Client: cs, Config: rc, Namespace: p.Namespace, Name: p.Name, Container: p.Spec.Containers[0].Name}
	}
	return out, nil
}

// pickKubeProxyPods chooses, per node, the running kube-proxy pod to read. A pod with the label
// that no DaemonSet runs and that is no static pod is refused by name: it could be anyone's.
func pickKubeProxyPods(pods []corev1.Pod) (map[string]*corev1.Pod, error) {
	out := map[string]*corev1.Pod{}
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || len(p.Spec.Containers) == 0 || p.Spec.NodeName == "" {
			continue // not running, or on its way out
		}
		if !runByDaemonSetOrNode(p) {
			return nil, fmt.Errorf("pod %s/%s on node %s carries kube-proxy's label %s but is neither run by a DaemonSet nor a static pod: svctrace does not read a node through it", p.Namespace, p.Name, p.Spec.NodeName, kubeProxyLabel)
		}
		if prev := out[p.Spec.NodeName]; prev == nil || p.Name < prev.Name {
			out[p.Spec.NodeName] = p
		}
	}
	return out, nil
}

// runByDaemonSetOrNode reports whether a DaemonSet controls the pod, or the kubelet runs it as a
// static pod (its API object is a mirror).
func runByDaemonSetOrNode(p *corev1.Pod) bool {
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return true
	}
	for _, o := range p.OwnerReferences {
		if o.Controller != nil && *o.Controller && o.Kind == "DaemonSet" && o.APIVersion == "apps/v1" {
			return true
		}
	}
	return false
}

// nodeSelector selects a node's pods, the node's name escaped as a field selector's value.
func nodeSelector(node string) string {
	return fields.OneTermEqualSelector("spec.nodeName", node).String()
}

// agentLabel selects the svctrace agent's pods (krew/agent/daemonset.yaml).
const agentLabel = "app.kubernetes.io/name=svctrace-agent"

// agentBinary is the svctrace binary in the agent's image (krew/agent/Dockerfile puts it on the
// PATH).
const agentBinary = "kubectl-svctrace"

// agentPod is the svctrace agent's pod on a node, to read kube-proxy's nftables objects one by
// one there (a remote scoped read): a running pod of the agent's namespace that a DaemonSet runs,
// when the user may exec into it. ok is false when there is none to use (no agent, or no right
// to exec): the read then goes through kube-proxy's pod, whole.
func agentPod(ctx context.Context, cfg *genericclioptions.ConfigFlags, namespace, node string) (noderun.Pod, bool, string) {
	rc, err := cfg.ToRESTConfig()
	if err != nil {
		return noderun.Pod{}, false, err.Error()
	}
	rc.Timeout = 0 // exec streams; the context bounds it
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return noderun.Pod{}, false, err.Error()
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pods, err := cs.CoreV1().Pods(namespace).List(lctx, metav1.ListOptions{LabelSelector: agentLabel, FieldSelector: nodeSelector(node)})
	if err != nil {
		return noderun.Pod{}, false, fmt.Sprintf("listing svctrace agent pods in %s: %v", namespace, err)
	}
	var pick *corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && len(p.Spec.Containers) > 0 && runByDaemonSetOrNode(p) && (pick == nil || p.Name < pick.Name) {
			pick = p
		}
	}
	if pick == nil {
		return noderun.Pod{}, false, fmt.Sprintf("no svctrace agent pod runs on %s in namespace %s", node, namespace)
	}
	if err := checkExec(lctx, cs, namespace); err != nil {
		return noderun.Pod{}, false, err.Error()
	}
	return noderun.Pod{Client: cs, Config: rc, Namespace: pick.Namespace, Name: pick.Name, Container: pick.Spec.Containers[0].Name}, true, ""
}

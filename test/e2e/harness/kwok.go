package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KwokNode is a node that kwok plays the kubelet for: its kube-proxy pod's exec runs in node1's
// network namespace, so reading it remotely reads node1's real rules through the API server.
const KwokNode = "kwok-node"

// KwokLabel selects the nodes kwok plays the kubelet for.
const KwokLabel = "type=kwok"

// KubeProxyPod is the kube-proxy pod kwok serves exec for.
const KubeProxyPod = "kube-proxy-kwok"

// StartKwok creates the kwok node and a kube-proxy pod on it, and runs kwok in node1's namespace
// with an Exec rule that runs the pod's commands there.
func (c *Cluster) StartKwok(ctx context.Context, kwok string) error {
	t := time.Now()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: KwokNode, Labels: map[string]string{"type": "kwok"}}}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", KwokNode, err)
	}
	if err := c.ensureNamespace(ctx, "kube-system"); err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: KubeProxyPodMeta(KubeProxyPod),
		Spec: corev1.PodSpec{NodeName: KwokNode, Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{Name: "kube-proxy", Image: "registry.k8s.io/kube-proxy:v1.36.3"}}},
	}
	if _, err := c.Client.CoreV1().Pods("kube-system").Create(ctx, pod, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create pod %s: %w", KubeProxyPod, err)
	}
	// Every pod in kube-system on a kwok node execs in node1's namespace: kube-proxy pods and
	// svctrace's debug pods alike; so do the svctrace agent's (AddAgentPod), whose binary kwok
	// finds on its PATH (KwokPath).
	config := filepath.Join(c.Dir, "kwok.yaml")
	if err := os.WriteFile(config, []byte(`kind: ClusterExec
apiVersion: kwok.x-k8s.io/v1alpha1
metadata:
  name: node1-netns
spec:
  selector:
    matchNamespaces: ["kube-system", "`+AgentNamespace+`"]
  execs:
  - local:
      workDir: /
`), 0o644); err != nil {
		return err
	}
	c.mu.Lock()
	c.pathFor["kwok"] = c.KwokPath
	c.mu.Unlock()
	// No node leases: each kwok process has its own holder identity (hostname and a UUID), so
	// with leases a kwok started within a lease's duration of the last one (tests start and stop
	// it in turn) manages no node until that lease expires, and a pod created meanwhile never
	// runs (seen with 600 s leases when the tests between two kwok runs took under 10 minutes).
	if err := c.spawn("kwok", NodeNS, kwok, "--kubeconfig="+c.Kubeconfig, "--manage-nodes-with-label-selector="+KwokLabel,
		"--node-ip="+NodeIP, "--server-address="+NodeIP+":10250", "--config="+config, "--cidr=10.244.9.0/24",
		"--node-lease-duration-seconds=0"); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		p, err := c.Client.CoreV1().Pods("kube-system").Get(ctx, KubeProxyPod, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kwok did not run pod %s: %s", KubeProxyPod, c.logTail("kwok"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.Phase("kwok (kubelet API for "+KwokNode+")", t)
	return nil
}

// AddKwokNode creates another node kwok plays the kubelet for (without a kube-proxy pod unless
// withKubeProxy): pods on it that exec, exec in node1's namespace.
func (c *Cluster) AddKwokNode(ctx context.Context, name string, withKubeProxy bool) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"type": "kwok"}}}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	if !withKubeProxy {
		return nil
	}
	pod := &corev1.Pod{
		ObjectMeta: KubeProxyPodMeta("kube-proxy-" + name),
		Spec: corev1.PodSpec{NodeName: name, Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{Name: "kube-proxy", Image: "registry.k8s.io/kube-proxy:v1.36.3"}}},
	}
	if _, err := c.Client.CoreV1().Pods("kube-system").Create(ctx, pod, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create pod %s: %w", pod.Name, err)
	}
	return nil
}

// KubeProxyPodMeta is a kube-proxy pod's metadata as its DaemonSet makes it: in kube-system,
// labelled k8s-app=kube-proxy, controlled by the DaemonSet (svctrace reads nodes only through
// such pods). No garbage collector runs in the harness, so the owner need not exist.
func KubeProxyPodMeta(name string) metav1.ObjectMeta {
	yes := true
	return metav1.ObjectMeta{Namespace: "kube-system", Name: name, Labels: map[string]string{"k8s-app": "kube-proxy"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "kube-proxy", UID: "00000000-0000-0000-0000-00000000c0de", Controller: &yes}}}
}

// AgentNamespace and AgentPod are the svctrace agent's namespace and its pod on the kwok node.
const (
	AgentNamespace = "svctrace-system"
	AgentPod       = "svctrace-agent-kwok"
)

// AddAgentPod creates the svctrace agent's pod on the kwok node (as its DaemonSet would: the
// label, a DaemonSet owner): kwok runs its exec in node1's namespace, where kubectl-svctrace is
// found on kwok's PATH (KwokPath). Call after StartKwok.
func (c *Cluster) AddAgentPod(ctx context.Context) error {
	if err := c.ensureNamespace(ctx, AgentNamespace); err != nil {
		return err
	}
	yes := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: AgentNamespace, Name: AgentPod, Labels: map[string]string{"app.kubernetes.io/name": "svctrace-agent"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "svctrace-agent", UID: "00000000-0000-0000-0000-0000000a6e47", Controller: &yes}}},
		Spec: corev1.PodSpec{NodeName: KwokNode, Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{Name: "agent", Image: "svctrace-agent:v0.1.0"}}},
	}
	if _, err := c.Client.CoreV1().Pods(AgentNamespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create pod %s: %w", AgentPod, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		p, err := c.Client.CoreV1().Pods(AgentNamespace).Get(ctx, AgentPod, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kwok did not run pod %s: %s", AgentPod, c.logTail("kwok"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

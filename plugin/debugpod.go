package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/svctrace/svctrace/dataplane/noderun"
)

// debugPodLabel marks svctrace's debug pods (so that an operator can find any left behind).
const debugPodLabel = "app.kubernetes.io/managed-by"

// debugPodDeadline makes the kubelet stop a debug pod that svctrace could not delete (killed with
// SIGKILL, say) after this long.
const debugPodDeadline = 15 * 60

// DebugPodFlags configure the debug-pod fallback.
type DebugPodFlags struct {
	Enabled   bool
	Namespace string
	Image     string
}

func (d *DebugPodFlags) addFlags(fl interface {
	BoolVar(*bool, string, bool, string)
	StringVar(*string, string, string, string)
}) {
	fl.BoolVar(&d.Enabled, "debug-pod", false, "when --node has no kube-proxy pod svctrace may exec into, read it from a short-lived debug pod on that node (hostNetwork, only NET_ADMIN and NET_RAW, the xtables lock mounted), deleted when done, also on Ctrl-C; needs the RBAC of `kubectl svctrace rbac --debug-pod`")
	fl.StringVar(&d.Namespace, "debug-namespace", "kube-system", "namespace for --debug-pod (its Pod Security level must allow hostNetwork and NET_ADMIN)")
	fl.StringVar(&d.Image, "debug-image", DefaultDebugImage, "image for --debug-pod, best pinned by digest: it needs iptables-save (legacy and nft), nft, ipset, ipvsadm, conntrack and sleep")
}

// noKubeProxyError says the node runs no kube-proxy pod.
type noKubeProxyError struct{ node string }

func (e *noKubeProxyError) Error() string {
	return fmt.Sprintf("no running kube-proxy pod (label %s) on node %s: if kube-proxy is replaced there (e.g. Cilium's kube-proxy replacement), svctrace has no kube-proxy rules to read; use that dataplane's own tools (cilium service list); if kube-proxy runs outside a pod, add --debug-pod", kubeProxyLabel, e.node)
}

// execDeniedError says the user may not exec where the read needs to.
type execDeniedError struct{ ns string }

func (e *execDeniedError) Error() string {
	return fmt.Sprintf("you may not create pods/exec in namespace %s, which reading a node through its kube-proxy pod needs: have an admin run `kubectl svctrace rbac --user YOU --exec | kubectl apply -f -`, run svctrace on the node, or add --debug-pod with --debug-namespace where you may", e.ns)
}

// debugPodAccess lists what --debug-pod does in its namespace.
var debugPodAccess = []authv1.ResourceAttributes{
	{Verb: "create", Resource: "pods"},
	{Verb: "get", Resource: "pods"},
	{Verb: "delete", Resource: "pods"},
	{Verb: "create", Resource: "pods", Subresource: "exec"},
}

// startDebugPod creates the debug pod on node, waits until it runs, and returns a Runner that
// execs in it and the function that deletes it (call it on every exit path; it uses its own
// context, so a cancelled one still cleans up).
func startDebugPod(ctx context.Context, cfg *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams, d DebugPodFlags, node string) (noderun.Runner, func(), error) {
	rc, err := cfg.ToRESTConfig()
	if err != nil {
		return nil, nil, err
	}
	rc.Timeout = 0
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	var missing []string
	for _, ra := range debugPodAccess {
		ra.Namespace = d.Namespace
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra}}, metav1.CreateOptions{})
		if err != nil {
			return nil, nil, fmt.Errorf("checking permissions: %w", err)
		}
		if !r.Status.Allowed {
			what := ra.Resource
			if ra.Subresource != "" {
				what += "/" + ra.Subresource
			}
			missing = append(missing, ra.Verb+" "+what)
		}
	}
	if len(missing) > 0 {
		return nil, nil, &ExitError{Code: ExitRead, Err: fmt.Errorf("--debug-pod: you may not %s in namespace %s: have an admin run `kubectl svctrace rbac --user YOU --debug-pod --debug-namespace %s | kubectl apply -f -`", strings.Join(missing, ", "), d.Namespace, d.Namespace)}
	}
	pod := debugPodSpec(d, node)
	created, err := cs.CoreV1().Pods(d.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("creating the debug pod on node %s: %w", node, err)
	}
	name := created.Name
	cleanup := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		zero := int64(0)
		err := cs.CoreV1().Pods(d.Namespace).Delete(dctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil {
			fmt.Fprintf(streams.ErrOut, "warning: could not delete debug pod %s/%s: %v (its activeDeadlineSeconds stops it within %d minutes; delete it with kubectl delete pod -n %s %s)\n", d.Namespace, name, err, debugPodDeadline/60, d.Namespace, name)
			return
		}
		fmt.Fprintf(streams.ErrOut, "deleted debug pod %s/%s\n", d.Namespace, name)
	}
	fmt.Fprintf(streams.ErrOut, "created debug pod %s/%s on node %s\n", d.Namespace, name, node)
	deadline := time.Now().Add(90 * time.Second)
	for {
		p, err := cs.CoreV1().Pods(d.Namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case err != nil:
			cleanup()
			return nil, nil, fmt.Errorf("waiting for debug pod %s/%s: %w", d.Namespace, name, err)
		case p.Status.Phase == corev1.PodRunning:
			return noderun.Pod{Client: cs, Config: rc, Namespace: d.Namespace, Name: name, Container: "debug"}, cleanup, nil
		case p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded:
			cleanup()
			return nil, nil, fmt.Errorf("debug pod %s/%s ended (%s): %s", d.Namespace, name, p.Status.Phase, p.Status.Message)
		case time.Now().After(deadline):
			cleanup()
			return nil, nil, fmt.Errorf("debug pod %s/%s did not start within 90 s%s", d.Namespace, name, waitingReason(p))
		}
		select {
		case <-ctx.Done():
			cleanup()
			return nil, nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func waitingReason(p *corev1.Pod) string {
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Waiting != nil {
			return fmt.Sprintf(": %s %s", s.State.Waiting.Reason, s.State.Waiting.Message)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			return ": " + c.Message
		}
	}
	return ""
}

// debugPodSpec is the debug pod: on the node's network namespace, able to read and write
// netfilter (NET_ADMIN, NET_RAW) and nothing more, sharing the node's xtables lock so its reads
// never interleave with kube-proxy's writes.
func debugPodSpec(d DebugPodFlags, node string) *corev1.Pod {
	no, yes := false, true
	lock := corev1.HostPathFileOrCreate
	deadline := int64(debugPodDeadline)
	zero := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "svctrace-debug-", Namespace: d.Namespace, Labels: map[string]string{debugPodLabel: "svctrace"}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			HostNetwork:                   true,
			RestartPolicy:                 corev1.RestartPolicyNever,
			ActiveDeadlineSeconds:         &deadline,
			TerminationGracePeriodSeconds: &zero,
			AutomountServiceAccountToken:  &no,
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name:    "debug",
				Image:   d.Image,
				Command: []string{"sleep", fmt.Sprint(debugPodDeadline)},
				SecurityContext: &corev1.SecurityContext{
					Privileged:               &no,
					AllowPrivilegeEscalation: &no,
					ReadOnlyRootFilesystem:   &yes,
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "xtables-lock", MountPath: "/run/xtables.lock"}},
			}},
			Volumes: []corev1.Volume{{Name: "xtables-lock", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/run/xtables.lock", Type: &lock}}}},
		},
	}
}

// fallsBackToDebugPod reports whether err is one the debug pod works around.
func fallsBackToDebugPod(err error) bool {
	var none *noKubeProxyError
	var denied *execDeniedError
	return errors.As(err, &none) || errors.As(err, &denied)
}

// DefaultDebugImage is the --debug-pod image, pinned by the digest of nicolaka/netshoot v0.13's
// multi-architecture index, so that a re-pushed tag cannot change what runs on a node with
// NET_ADMIN.
const DefaultDebugImage = "nicolaka/netshoot:v0.13@sha256:a20c2531bf35436ed3766cd6cfe89d352b050ccc4d7005ce6400adf97503da1b"

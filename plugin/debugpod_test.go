package plugin

import (
	"context"
	"strings"
	"testing"

	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Both reasons a kube-proxy pod cannot be used are the ones the debug pod works around: none on
// the node, and exec into it denied (as the API server's access review says).
func TestDebugPodFallsBackOnMissingPodOrDeniedExec(t *testing.T) {
	cs := fake.NewSimpleClientset()
	cs.PrependReactor("create", "selfsubjectaccessreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &authv1.SelfSubjectAccessReview{Status: authv1.SubjectAccessReviewStatus{Allowed: false}}, nil
	})
	denied := checkExec(context.Background(), cs, "kube-system")
	if denied == nil || !fallsBackToDebugPod(denied) || !strings.Contains(denied.Error(), "--debug-pod") {
		t.Errorf("exec denied: %v", denied)
	}
	if !fallsBackToDebugPod(&noKubeProxyError{node: "n1"}) {
		t.Error("no kube-proxy pod does not fall back")
	}
	if fallsBackToDebugPod(usageErrorf("something else")) {
		t.Error("any error falls back")
	}
	p := debugPodSpec(DebugPodFlags{Namespace: "ops", Image: "img"}, "n1")
	c := p.Spec.Containers[0]
	if p.Namespace != "ops" || c.Image != "img" || p.Spec.NodeName != "n1" || !p.Spec.HostNetwork || *c.SecurityContext.Privileged ||
		len(c.SecurityContext.Capabilities.Add) != 2 || p.Spec.ActiveDeadlineSeconds == nil {
		t.Errorf("debug pod: %+v", p.Spec)
	}
}

// TestOnlyKubeProxysOwnPodsAreRead: a pod that merely carries kube-proxy's label is never exec'd
// into; DaemonSet pods and static mirror pods are.
func TestOnlyKubeProxysOwnPodsAreRead(t *testing.T) {
	yes := true
	pod := func(name, node string, owner string, mirror bool) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: name},
			Spec:   corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "kube-proxy"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}}
		if owner != "" {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: owner, Name: "kube-proxy", Controller: &yes}}
		}
		if mirror {
			p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"}
		}
		return p
	}
	got, err := pickKubeProxyPods([]corev1.Pod{pod("kube-proxy-a", "n1", "DaemonSet", false), pod("kube-proxy-n2", "n2", "", true)})
	if err != nil || got["n1"] == nil || got["n1"].Name != "kube-proxy-a" || got["n2"] == nil {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []corev1.Pod{pod("planted", "n1", "", false), pod("replica", "n1", "ReplicaSet", false)} {
		if _, err := pickKubeProxyPods([]corev1.Pod{pod("kube-proxy-a", "n1", "DaemonSet", false), bad}); err == nil || !strings.Contains(err.Error(), "pod kube-system/"+bad.Name) {
			t.Errorf("%s: %v", bad.Name, err)
		}
	}
}

// TestNodeSelectorEscapesTheName: a node's pods are selected by its name as one field selector
// term, a name that is not one (commas, equals signs) escaped instead of read as more terms.
func TestNodeSelectorEscapesTheName(t *testing.T) {
	for node, want := range map[string]string{"node1": "spec.nodeName=node1", "a,status.phase=Running": `spec.nodeName=a\,status.phase\=Running`} {
		if got := nodeSelector(node); got != want {
			t.Errorf("%q: %q, want %q", node, got, want)
		}
	}
}

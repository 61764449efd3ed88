package plugin

import (
	"context"
	"strings"
	"testing"

	authv1 "k8s.io/api/authorization/v1"
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

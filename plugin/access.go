package plugin

import (
	"context"
	"fmt"
	"strings"

	authv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// required lists the API reads svctrace makes, for the permission check before it starts.
var required = []authv1.ResourceAttributes{
	{Verb: "list", Resource: "services"},
	{Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices"},
	{Verb: "list", Resource: "pods"},
	{Verb: "list", Resource: "nodes"},
}

// checkAccess asks the API server (SelfSubjectAccessReview) whether the user may make every read
// svctrace needs, and names each that is missing in one sentence.
func checkAccess(ctx context.Context, cs kubernetes.Interface) error {
	var missing []string
	for _, ra := range required {
		ra := ra
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
			&authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra}}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("checking permissions: %w", err)
		}
		if !r.Status.Allowed {
			res := ra.Resource
			if ra.Group != "" {
				res += "." + ra.Group
			}
			missing = append(missing, fmt.Sprintf("%s %s", ra.Verb, res))
		}
	}
	if len(missing) > 0 {
		return &ExitError{Code: ExitRead, Err: fmt.Errorf("you may not %s in all namespaces: have an admin run `kubectl svctrace rbac --user YOU | kubectl apply -f -` (the ClusterRole svctrace-reader, krew/rbac/svctrace-reader.yaml in the source), or pass --objects FILE", strings.Join(missing, ", "))}
	}
	return nil
}

// checkExec asks whether the user may exec into pods of the namespace (the remote read).
func checkExec(ctx context.Context, cs kubernetes.Interface, ns string) error {
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: ns}}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("checking permissions: %w", err)
	}
	if !r.Status.Allowed {
		return &ExitError{Code: ExitRead, Err: &execDeniedError{ns: ns}}
	}
	return nil
}

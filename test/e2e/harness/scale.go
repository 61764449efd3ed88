package harness

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// ScaleNamespace holds the Services PopulateScale creates.
const ScaleNamespace = "scale"

// BulkClient is a client without client-side rate limits, for creating thousands of objects.
func (c *Cluster) BulkClient() (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 2000, 2000
	return kubernetes.NewForConfig(cfg)
}

// PopulateScale creates services selector-less Services with one hand-made EndpointSlice each of
// endpoints endpoints (addresses in 10.128.0.0/9, alternating node1 and node2), the way a large
// cluster looks to kube-proxy. Nothing ever answers on those addresses.
func (c *Cluster) PopulateScale(ctx context.Context, services, endpoints int) error {
	t := time.Now()
	cs, err := c.BulkClient()
	if err != nil {
		return err
	}
	if err := c.ensureNamespace(ctx, ScaleNamespace); err != nil {
		return err
	}
	base := netip.MustParseAddr("10.128.0.0")
	var next atomic.Int64
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < 24; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= services || ctx.Err() != nil {
					return
				}
				if err := createScaleService(ctx, cs, i, endpoints, base); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				if n := done.Add(1); n%1000 == 0 {
					fmt.Fprintf(c.Log, "harness: %d/%d scale services\n", n, services)
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	c.Phase(fmt.Sprintf("%d services × %d endpoints", services, endpoints), t)
	return nil
}

func createScaleService(ctx context.Context, cs kubernetes.Interface, i, endpoints int, base netip.Addr) error {
	name := fmt.Sprintf("svc-%05d", i)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ScaleNamespace, Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{TCPPort("http", 80, 8080)}},
	}
	if _, err := cs.CoreV1().Services(ScaleNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ScaleNamespace, Name: name + "-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "svctrace-e2e"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for j := 0; j < endpoints; j++ {
		a := addrPlus(base, uint32(i*endpoints+j+1))
		node := NodeName
		if j%2 == 1 {
			node = Node2Name
		}
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{a.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			NodeName:   ptr.To(node)})
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(ScaleNamespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create slice for %s: %w", name, err)
	}
	return nil
}

// UseLegacyIptables makes the processes the harness starts afterwards (kube-proxy) find the
// legacy iptables binaries first: iptables-nft's restore of 300,000 rules takes many minutes
// here, the legacy one seconds (DESIGN.md).
func (c *Cluster) UseLegacyIptables() error {
	dir := filepath.Join(c.Dir, "legacy-bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, fam := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-save", "-restore"} {
			if err := os.Symlink("/usr/sbin/"+fam+"-legacy"+suffix, filepath.Join(dir, fam+suffix)); err != nil {
				return err
			}
		}
	}
	c.pathPrefix = dir
	IptablesSave = "iptables-legacy-save"
	return nil
}

func addrPlus(a netip.Addr, n uint32) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

package trace

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Conn is one tracked connection: the client's original tuple and the backend the reply comes
// from, with packets and bytes counted in both directions (conntrack accounting).
type Conn struct {
	Protocol   Protocol
	Client     netip.Addr
	ClientPort uint16
	// Dst is where the client sent it: the Service address before DNAT.
	Dst     netip.AddrPort
	Backend netip.AddrPort
	Packets uint64
	Bytes   uint64
	State   string
	// Zone is the conntrack zone (0, the default, unless a CT --zone rule set one).
	Zone uint16
}

// Diagnoses of `balance`.
const (
	ConnectionStickiness = "ConnectionStickiness"
	SkewedRules          = "SkewedRules"
	Balanced             = "Balanced"
	TooLittleTraffic     = "TooLittleTraffic"
)

// BalanceBackend is one backend's expected and measured share.
type BalanceBackend struct {
	Backend  string  `json:"backend"`
	Pod      *PodRef `json:"pod"`
	Expected float64 `json:"expected"`
	// Connections and Bytes are what conntrack saw in the window.
	Connections     int     `json:"connections"`
	ConnectionShare float64 `json:"connectionShare"`
	Bytes           uint64  `json:"bytes"`
	ByteShare       float64 `json:"byteShare"`
	// NewConnections is what the dataplane's own counters say (iptables -c on the DNAT rule):
	// every new connection of the window, also those conntrack no longer lists.
	NewConnections *uint64 `json:"newConnections,omitempty"`
}

// BalanceClient is a client ranked by the traffic it carries.
type BalanceClient struct {
	IP          string   `json:"ip"`
	Pod         *PodRef  `json:"pod"`
	Owner       string   `json:"owner,omitempty"`
	Connections int      `json:"connections"`
	Bytes       uint64   `json:"bytes"`
	ByteShare   float64  `json:"byteShare"`
	Backends    []string `json:"backends"`
}

// BalanceResult is `balance`'s answer for one Service port on one node.
type BalanceResult struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Node       string           `json:"node"`
	Service    *ServiceRef      `json:"service"`
	Backends   []BalanceBackend `json:"backends"`
	Clients    []BalanceClient  `json:"clients"`
	// Stats are over the byte shares (traffic) and the connection counts (balancing decisions).
	MaxOverMean     float64  `json:"maxOverMean"`
	MinOverMean     float64  `json:"minOverMean"`
	CV              float64  `json:"coefficientOfVariation"`
	ChiSquare       float64  `json:"chiSquare"`
	ChiSquareP      float64  `json:"chiSquareP"`
	Diagnosis       string   `json:"diagnosis"`
	Message         string   `json:"message"`
	Recommendations []string `json:"recommendations,omitempty"`
	Notes           []string `json:"notes,omitempty"`
}

// minConnections is how many connections a judgement of the connection split needs.
const minConnections = 20

// SkewP is the chi-square p-value under which new connections are said not to follow the
// dataplane's shares. Healthy random DNAT falls under a threshold p that often by chance, so it
// is small: at 0.001, one healthy node in a thousand would be called skewed, and one in three
// `balance --all-nodes` runs over 400 nodes would name one. What it is there to catch (session
// affinity, rules changed in the window) is far past it after a few dozen connections.
const SkewP = 1e-6

// Balance compares how a Service port's traffic is really spread (conns: conntrack entries of the
// window) with how the dataplane splits new connections (tr: a trace of the Service address).
// newConns, when the dataplane counts them (backend "ip:port" → new connections in the window),
// is what the connection split is tested on.
func Balance(tr *Result, cl *Cluster, conns []Conn, newConns map[string]uint64) *BalanceResult {
	return balance(tr, cl, conns, newConns, false)
}

// balance is Balance; acrossNodes says tr is several nodes' traces merged, whose shares may
// differ from node to node without any node's rules being skewed (those are judged per node).
func balance(tr *Result, cl *Cluster, conns []Conn, newConns map[string]uint64, acrossNodes bool) *BalanceResult {
	res := &BalanceResult{APIVersion: APIVersion, Kind: "Balance", Node: tr.Node, Service: tr.Service, Backends: []BalanceBackend{}, Clients: []BalanceClient{}}
	dst := netip.AddrPortFrom(netip.MustParseAddr(tr.Packet.Dst), tr.Packet.Port)
	proto, _ := ParseProtocol(tr.Packet.Protocol)
	idx := map[string]int{}
	for _, b := range tr.Backends {
		key := fmt.Sprintf("%s:%d", b.IP, b.Port)
		if ap, err := netip.ParseAddrPort(key); err == nil {
			key = ap.String()
		}
		idx[key] = len(res.Backends)
		res.Backends = append(res.Backends, BalanceBackend{Backend: key, Pod: b.Pod, Expected: b.Probability})
	}
	clients := map[netip.Addr]*BalanceClient{}
	var flows []Conn
	// Byte counts are summed as floats for the shares: a counter near 2^64 (a wrapped or forged
	// one) would overflow a uint64 sum and make every backend 100%. The uint64 totals shown
	// saturate instead of wrapping.
	var totalBytes uint64
	var totalF float64
	backendF := make([]float64, len(res.Backends))
	clientF := map[netip.Addr]float64{}
	total := 0
	for _, c := range conns {
		if c.Protocol != proto || c.Dst != dst {
			continue
		}
		i, ok := idx[c.Backend.String()]
		if !ok {
			res.Notes = append(res.Notes, fmt.Sprintf("a connection from %s went to %s, which the dataplane does not list now", c.Client, c.Backend))
			continue
		}
		res.Backends[i].Connections++
		res.Backends[i].Bytes = addSat(res.Backends[i].Bytes, c.Bytes)
		totalBytes = addSat(totalBytes, c.Bytes)
		backendF[i] += float64(c.Bytes)
		totalF += float64(c.Bytes)
		clientF[c.Client] += float64(c.Bytes)
		total++
		flows = append(flows, c)
		cli := clients[c.Client]
		if cli == nil {
			cli = &BalanceClient{IP: c.Client.String()}
			if pod := cl.PodByIP(c.Client); pod != nil {
				cli.Pod = &PodRef{Namespace: pod.Namespace, Name: pod.Name}
				if len(pod.OwnerReferences) > 0 {
					cli.Owner = pod.OwnerReferences[0].Kind + "/" + pod.OwnerReferences[0].Name
				}
			}
			clients[c.Client] = cli
		}
		cli.Connections++
		cli.Bytes = addSat(cli.Bytes, c.Bytes)
		if !slices.Contains(cli.Backends, c.Backend.String()) {
			cli.Backends = append(cli.Backends, c.Backend.String())
		}
	}
	n := len(res.Backends)
	if n == 0 {
		res.Diagnosis, res.Message = TooLittleTraffic, "the dataplane sends this Service's new connections to no backend; see `svctrace trace`"
		return res
	}
	for i := range res.Backends {
		if total > 0 {
			res.Backends[i].ConnectionShare = float64(res.Backends[i].Connections) / float64(total)
		}
		if totalF > 0 {
			res.Backends[i].ByteShare = backendF[i] / totalF
		}
	}
	for _, c := range clients {
		if totalF > 0 {
			c.ByteShare = clientF[netip.MustParseAddr(c.IP)] / totalF
		}
		res.Clients = append(res.Clients, *c)
	}
	sort.Slice(res.Clients, func(i, j int) bool { return res.Clients[i].Bytes > res.Clients[j].Bytes })
	if len(res.Clients) > 10 {
		res.Clients = res.Clients[:10]
	}

	// Spread of the traffic over the backends.
	mean := 1 / float64(n)
	var maxS, minS, sq float64 = 0, 1, 0
	for _, b := range res.Backends {
		maxS, minS = math.Max(maxS, b.ByteShare), math.Min(minS, b.ByteShare)
		sq += (b.ByteShare - mean) * (b.ByteShare - mean)
	}
	res.MaxOverMean, res.MinOverMean = maxS/mean, minS/mean
	res.CV = math.Sqrt(sq/float64(n)) / mean

	// Does the connection split follow the rules' shares? The dataplane's counters see every
	// new connection; conntrack only those it still tracks.
	counts := make([]float64, n)
	sum := 0.0
	for i := range res.Backends {
		counts[i] = float64(res.Backends[i].Connections)
	}
	if newConns != nil {
		for i := range res.Backends {
			v := newConns[res.Backends[i].Backend]
			res.Backends[i].NewConnections = &v
			counts[i] = float64(v)
		}
		res.Notes = append(res.Notes, "the connection split is tested on the dataplane's own counters of new connections")
	}
	for _, c := range counts {
		sum += c
	}
	if sum >= minConnections {
		for i, b := range res.Backends {
			e := b.Expected * sum
			if e > 0 {
				res.ChiSquare += (counts[i] - e) * (counts[i] - e) / e
			}
		}
		res.ChiSquareP = chiSquareSurvival(res.ChiSquare, float64(n-1))
	} else {
		res.ChiSquareP = 1
		res.Notes = append(res.Notes, fmt.Sprintf("only %.0f connections in the window: too few to test the connection split (need %d)", sum, minConnections))
	}

	unequalRules := false
	for _, b := range res.Backends {
		unequalRules = unequalRules || math.Abs(b.Expected-mean) > 0.01
	}
	if unequalRules && acrossNodes {
		unequalRules = false
		res.Notes = append(res.Notes, "the nodes do not all send this Service to the same backends (traffic policy Local, topology hints, or a stale node): the expected shares are the mean of the nodes' shares; each node's rules are judged on their own")
	}
	// The heaviest few connections: do they carry most of the traffic?
	sort.Slice(flows, func(i, j int) bool { return flows[i].Bytes > flows[j].Bytes })
	top := 0.0
	k := min(3, len(flows))
	for _, f := range flows[:k] {
		top += float64(f.Bytes)
	}
	topShare := 0.0
	if totalF > 0 {
		topShare = top / totalF
	}
	switch {
	case total == 0 || totalBytes == 0:
		res.Diagnosis, res.Message = TooLittleTraffic, "conntrack shows no traffic to this Service in the window (is byte accounting on? `sysctl net.netfilter.nf_conntrack_acct=1`)"
	case total < minConnections && !unequalRules:
		res.Diagnosis, res.Message = TooLittleTraffic, fmt.Sprintf("only %d connection(s) in the window: too few to judge the balance (watch longer with --duration)", total)
	case unequalRules:
		res.Diagnosis = SkewedRules
		res.Message = "the dataplane's own shares are unequal: kube-proxy should split new connections equally; run `svctrace check` on this node"
	case res.MaxOverMean > 1.5 && topShare > 0.5 && len(flows) > k:
		res.Diagnosis = ConnectionStickiness
		var who []string
		for _, c := range res.Clients {
			if c.ByteShare < 0.1 {
				break
			}
			name := c.IP
			if c.Pod != nil {
				name += " (pod " + c.Pod.Namespace + "/" + c.Pod.Name
				if c.Owner != "" {
					name += ", " + c.Owner
				}
				name += ")"
			}
			who = append(who, fmt.Sprintf("%s: %.0f%% of the traffic over %d connection(s)", name, 100*c.ByteShare, c.Connections))
		}
		res.Message = fmt.Sprintf("%d of %d connections carry %.0f%% of the traffic, so the busiest backend gets %.1fx its fair share: load is balanced once per connection, and long-lived connections pin it. Heaviest clients: %s",
			k, len(flows), 100*topShare, res.MaxOverMean, strings.Join(who, "; "))
		res.Recommendations = []string{
			"make the client balance per request: a headless Service (clusterIP: None) with client-side balancing (Envoy STRICT_DNS or EDS clusters, gRPC round_robin)",
			"limit connection lifetime so connections are re-balanced: Envoy max_requests_per_connection or max_connection_duration, gRPC server MaxConnectionAge",
			"or put an L7-aware proxy (a service mesh sidecar, an ingress) between the clients and the Service",
		}
	case res.ChiSquareP < SkewP:
		res.Diagnosis = SkewedRules
		res.Message = fmt.Sprintf("new connections do not follow the dataplane's shares (chi-square %.1f, p=%.2g); session affinity or rules changed during the window?", res.ChiSquare, res.ChiSquareP)
	default:
		res.Diagnosis = Balanced
		res.Message = fmt.Sprintf("traffic follows the dataplane's split: busiest backend %.2fx its fair share, coefficient of variation %.2f", res.MaxOverMean, res.CV)
	}
	return res
}

// chiSquareSurvival is P(X >= x) for a chi-square variable with k degrees of freedom: the
// regularized upper incomplete gamma function Q(k/2, x/2).
func chiSquareSurvival(x, k float64) float64 {
	if k <= 0 {
		return 1
	}
	a, z := k/2, x/2
	if z <= 0 {
		return 1
	}
	lg, _ := math.Lgamma(a)
	if z < a+1 {
		// Series for P, then Q = 1 - P.
		sum, term := 1/a, 1/a
		for n := 1; n < 500; n++ {
			term *= z / (a + float64(n))
			sum += term
			if term < sum*1e-15 {
				break
			}
		}
		return math.Max(0, 1-sum*math.Exp(-z+a*math.Log(z)-lg))
	}
	// Continued fraction for Q (Lentz).
	b := z + 1 - a
	c := 1 / 1e-300
	d := 1 / b
	h := d
	for i := 1; i < 500; i++ {
		an := -float64(i) * (float64(i) - a)
		b += 2
		d = an*d + b
		if math.Abs(d) < 1e-300 {
			d = 1e-300
		}
		c = b + an/c
		if math.Abs(c) < 1e-300 {
			c = 1e-300
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < 1e-15 {
			break
		}
	}
	return math.Min(1, math.Exp(-z+a*math.Log(z)-lg)*h)
}

// NodeBalance is one node's part of a Service's traffic, for the all-nodes report.
type NodeBalance struct {
	Node        string  `json:"node"`
	Diagnosis   string  `json:"diagnosis"`
	Connections int     `json:"connections"`
	Bytes       uint64  `json:"bytes"`
	MaxOverMean float64 `json:"maxOverMean"`
	Message     string  `json:"message"`
}

// BalanceAcrossNodes is `balance --all-nodes`: the Service's traffic on every node added up, and
// each node's own result in brief (a node's clients are balanced by that node's rules alone).
type BalanceAcrossNodes struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Overall    *BalanceResult `json:"overall"`
	Nodes      []NodeBalance  `json:"nodes"`
}

// NodeWindow is what one node measured: its trace of the Service address, its connections of the
// window and its dataplane's new-connection counters (nil when it has none).
type NodeWindow struct {
	Trace    *Result
	Conns    []Conn
	Counters map[string]uint64
}

// BalanceNodes balances every node's window on its own, and all of them together: the backends
// are the union of the nodes' backends, each expected to get the mean of its per-node shares, and
// the counters add up (they are used only when every node has them).
func BalanceNodes(cl *Cluster, windows []NodeWindow) *BalanceAcrossNodes {
	out := &BalanceAcrossNodes{APIVersion: APIVersion, Kind: "BalanceAcrossNodes", Nodes: []NodeBalance{}}
	if len(windows) == 0 {
		return out
	}
	merged := *windows[0].Trace
	merged.Node = "all nodes"
	merged.Backends = nil
	shares := map[string]int{}
	var conns []Conn
	counters := map[string]uint64{}
	for _, w := range windows {
		r := Balance(w.Trace, cl, w.Conns, w.Counters)
		nb := NodeBalance{Node: w.Trace.Node, Diagnosis: r.Diagnosis, MaxOverMean: r.MaxOverMean, Message: r.Message}
		for _, b := range r.Backends {
			nb.Connections += b.Connections
			nb.Bytes = addSat(nb.Bytes, b.Bytes)
		}
		out.Nodes = append(out.Nodes, nb)
		for _, b := range w.Trace.Backends {
			key := fmt.Sprintf("%s:%d", b.IP, b.Port)
			i, seen := shares[key]
			if !seen {
				i = len(merged.Backends)
				shares[key] = i
				zero := b
				zero.Probability = 0
				merged.Backends = append(merged.Backends, zero)
			}
			merged.Backends[i].Probability += b.Probability / float64(len(windows))
		}
		conns = append(conns, w.Conns...)
		if counters != nil && w.Counters == nil {
			counters = nil
		}
		for k, v := range w.Counters {
			if counters != nil {
				counters[k] += v
			}
		}
	}
	out.Overall = balance(&merged, cl, conns, counters, true)
	return out
}

// addSat adds without wrapping: a sum past 2^64 stays at its maximum.
func addSat(a, b uint64) uint64 {
	if a+b < a {
		return math.MaxUint64
	}
	return a + b
}

package trace

// RepairPlan is what `repair` would change on a node so that its dataplane does what the API
// says, for the Services in scope: per iptables table the exact iptables-restore input, or the
// IPVS netlink operations, and the conntrack entries to delete. It is computed without I/O.
type RepairPlan struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Node       string `json:"node"`
	Mode       string `json:"mode"`
	// Changes are the plan in words, one per rule, chain, real server or conntrack flush.
	Changes []RepairChange `json:"changes"`
	// IPTables holds one restore transaction per table (iptables mode, and IPVS mode's own
	// iptables rules are left to kube-proxy).
	IPTables []TableRestore `json:"iptables,omitempty"`
	// IPVS are the netlink operations, in order.
	IPVS []IPVSOp `json:"ipvs,omitempty"`
	// Nftables holds one change per family of kube-proxy's nftables table (nftables mode).
	Nftables []NftChange `json:"nftables,omitempty"`
	// Leftovers are kube-proxy state of another mode to remove, as it was read.
	Leftovers []Leftover `json:"leftovers,omitempty"`
	// Conntrack are the UDP entries to delete once the rules no longer send traffic there.
	Conntrack []ConntrackFlush `json:"conntrack,omitempty"`
	// Services are the service ports the plan repairs ("ns/name:port/proto"); the verification
	// traces them afterwards.
	Services []string `json:"services"`
	Notes    []string `json:"notes,omitempty"`
}

// Empty reports whether there is nothing to do.
func (p *RepairPlan) Empty() bool {
	return len(p.IPTables) == 0 && len(p.IPVS) == 0 && len(p.Nftables) == 0 && len(p.Leftovers) == 0 && len(p.Conntrack) == 0
}

// NftChange is the change to kube-proxy's nftables table of one family: the objects it touches
// as they were when planned, and as they must be after. The transaction that turns one into the
// other is derived from them when it is written; nothing in a plan is run as it stands.
type NftChange struct {
	// Family is "ip" or "ip6" (the table is always "kube-proxy").
	Family string   `json:"family"`
	Before NftState `json:"before"`
	After  NftState `json:"after"`
}

// NftState is some of a kube-proxy table's objects: per-Service chains with their rules (in the
// form nft reads), affinity sets, and elements of the shared sets and maps.
type NftState struct {
	Chains   []ChainRules `json:"chains"`
	Sets     []NftSet     `json:"sets"`
	Elements []NftElement `json:"elements"`
}

// NftSet is an affinity set: present with its timeout, or absent.
type NftSet struct {
	Name   string `json:"name"`
	Exists bool   `json:"exists"`
	// Timeout is the elements' timeout in seconds.
	Timeout int `json:"timeout,omitempty"`
}

// NftElement is one element of a shared set or map: its key ("10.96.0.10 . udp . 53"), and its
// value for maps ("goto service-…", "drop"), or its absence.
type NftElement struct {
	Set     string `json:"set"`
	Key     string `json:"key"`
	Exists  bool   `json:"exists"`
	Value   string `json:"value,omitempty"`
	Comment string `json:"comment,omitempty"`
}

// RepairChange is one change, for people.
type RepairChange struct {
	Service string `json:"service,omitempty"`
	// Op is add-rule, delete-rule, add-chain, delete-chain, add-element, delete-element,
	// add-set, delete-set, add-real, delete-real, set-weight, delete-virtual or flush-conntrack.
	Op    string `json:"op"`
	Table string `json:"table,omitempty"`
	// Family is "ipv6" for a change to ip6tables rules (IPv4's is left out).
	Family string `json:"family,omitempty"`
	Chain  string `json:"chain,omitempty"`
	Detail string `json:"detail"`
}

// TableRestore is one table's transaction.
type TableRestore struct {
	Table string `json:"table"`
	// Family is "ipv6" for an ip6tables table (written with ip6tables-restore); IPv4's is left
	// out.
	Family string `json:"family,omitempty"`
	// Input is the complete `iptables-restore --noflush` input: a chain line (which flushes the
	// chain) and the complete rule list of every chain it touches, then `-X` for chains removed.
	Input string `json:"input"`
	// Before holds the touched chains' rules as the plan read them ("" key order as in Input):
	// the apply step re-reads them and refuses when they changed meanwhile. Chains the plan
	// creates are listed with no rules and must not exist.
	Before []ChainRules `json:"before"`
	// After is what the touched chains must hold once applied (deleted chains absent).
	After []ChainRules `json:"after"`
}

// FamilyIPv6 is TableRestore's and RepairChange's Family of ip6tables rules.
const FamilyIPv6 = "ipv6"

// IPv6 says whether the table is an ip6tables one.
func (t TableRestore) IPv6() bool { return t.Family == FamilyIPv6 }

// Key names the table among a plan's: "nat", or "ipv6 nat".
func (t TableRestore) Key() string { return TableKey(t.Table, t.IPv6()) }

// TableKey is TableRestore.Key of a table of a family.
func TableKey(table string, v6 bool) string {
	if v6 {
		return FamilyIPv6 + " " + table
	}
	return table
}

// ChainRules is a chain's rules as iptables-save prints them; Exists is false for a chain that
// is absent.
type ChainRules struct {
	Chain  string   `json:"chain"`
	Exists bool     `json:"exists"`
	Rules  []string `json:"rules"`
}

// IPVSOp is one netlink operation on a virtual server.
type IPVSOp struct {
	// Op is add-real, set-weight, delete-real.
	Op       string `json:"op"`
	Protocol string `json:"protocol"`
	Virtual  string `json:"virtual"`
	FWMark   uint32 `json:"fwmark,omitempty"`
	Real     string `json:"real"`
	Weight   int    `json:"weight"`
	// WhenIdle says the real server is deleted only once it has no connections (TCP, SCTP):
	// until then it stays at weight 0, receiving no new ones.
	WhenIdle bool `json:"whenIdle,omitempty"`
}

// ConntrackFlush deletes the conntrack entries of one service address that point at a removed
// endpoint: UDP entries of endpoints a repair removes, and the stale flows check reports.
type ConntrackFlush struct {
	Protocol string `json:"protocol"`
	// Dst is the Service address and port the client used (cluster IP, node port, ...).
	Dst string `json:"dst"`
	// Backend is the removed endpoint's IP; BackendPort its port, when only that port's entries
	// go (0: any).
	Backend     string `json:"backend"`
	BackendPort uint16 `json:"backendPort,omitempty"`
	// Zone limits the deletion to one conntrack zone (nil: any zone).
	Zone *uint16 `json:"zone,omitempty"`
	// Entries is how many entries matched when the plan was made (stale flows; 0 when not counted).
	Entries int `json:"entries,omitempty"`
}

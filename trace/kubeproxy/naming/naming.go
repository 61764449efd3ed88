// Package naming holds kube-proxy's naming conventions, which the engine reads names by: its
// rule comments, its per-Service chain prefixes in iptables mode and its chain names in nftables
// mode. It imports nothing of the project, so that every package of the engine can use it.
package naming

import "strings"

// ServiceChainPrefixes are the prefixes of the chains kube-proxy (1.24 and later) writes per
// Service port or endpoint in iptables mode.
var ServiceChainPrefixes = []string{"KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-"}

// OldLocalChainPrefix is the per-Service chain of externalTrafficPolicy Local before 1.24.
const OldLocalChainPrefix = "KUBE-XLB-"

// IsServiceChain reports whether a chain is one of kube-proxy's per-Service-port chains.
func IsServiceChain(name string) bool {
	for _, p := range ServiceChainPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// RuleComment returns a rule's `--comment` text as iptables-save prints it (quoted or not), or "".
// kube-proxy comments its rules with the Service port ("default/web:http cluster IP").
func RuleComment(rule string) string {
	i := strings.Index(rule, "--comment ")
	if i < 0 {
		return ""
	}
	rest := rule[i+len("--comment "):]
	if strings.HasPrefix(rest, "\"") {
		if j := strings.IndexByte(rest[1:], '"'); j >= 0 {
			return rest[1 : j+1]
		}
		return ""
	}
	rest, _, _ = strings.Cut(rest, " ")
	return rest
}

// NftChainService reads the Service port out of kube-proxy's nftables chain names:
// service-HASH-NS/NAME/PROTO/PORT, external-…, local-…, firewall-…, endpoint-…__IP/PORT.
func NftChainService(chain string) (namespace, name, port string, ok bool) {
	kind, rest, ok := strings.Cut(chain, "-")
	switch kind {
	case "service", "external", "local", "firewall", "endpoint":
	default:
		return "", "", "", false
	}
	if !ok {
		return "", "", "", false
	}
	if _, rest, ok = strings.Cut(rest, "-"); !ok {
		return "", "", "", false
	}
	rest, _, _ = strings.Cut(rest, "__")
	parts := strings.Split(rest, "/")
	if len(parts) != 4 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[3], true
}

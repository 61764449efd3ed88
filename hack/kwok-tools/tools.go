//go:build tools

// Package tools records the kwok binary the e2e harness builds.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
